"""A client for `secretchat host`: Telegram Secret Chats from Python, standard library only.

The engine runs as a child process speaking JSON lines (docs/host.md). Your program keeps its
own MTProto connection (Telethon, Pyrogram, ...) and carries the engine's server calls over it:

    async def invoke(account: int, request: bytes, dc_id: Optional[int]) -> bytes:
        # dc_id: the data center a file download must go to (None: the home DC)
        return await my_client_raw_call(request, dc_id)   # raise RpcError(code, message)

    host = await Host.start("secretchat", data_dir="/var/lib/bridge/secret", invoke=invoke)
    await host.add_account(1)
    # forward updateNewEncryptedMessage / updateEncryption / updateEncryptedMessagesRead /
    # updateEncryptedChatTyping of account 1 as raw TL:
    await host.push_update(1, raw_update_bytes)
    async for event in host.events():
        ...
        if event.seq is not None:
            await host.ack(event.seq)        # after handling: until then it comes again

Everything here is asyncio; nothing outside the standard library is needed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional

__all__ = [
    "Host",
    "HostError",
    "RpcError",
    "SecretChat",
    "Message",
    "FileRef",
    "Event",
    "SimServer",
]

#: The longest line the host accepts (docs/host.md).
MAX_LINE = 4 << 20


class HostError(Exception):
    """The host answered a request with an `error` line."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RpcError(Exception):
    """Raise from your `invoke` callback when Telegram answers with an error
    (e.g. `RpcError(420, "FLOOD_WAIT_31")`); the engine retries or reports it as it would."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SecretChat:
    """A secret chat (`secretChat`)."""

    id: int
    server_chat_id: int
    user_id: int
    state: str  # "pending" | "ready" | "closed"
    is_outbound: bool
    layer: int
    ttl: int
    key_hash: bytes  # 36 bytes once ready: compare its image with the peer's screen
    close_reason: Optional[str] = None

    @staticmethod
    def from_json(v: Dict[str, Any]) -> "SecretChat":
        return SecretChat(
            id=int(v["id"]),
            server_chat_id=int(v["server_chat_id"]),
            user_id=int(v["user_id"]),
            state=v["state"],
            is_outbound=bool(v["is_outbound"]),
            layer=int(v["layer"]),
            ttl=int(v["ttl"]),
            key_hash=bytes.fromhex(v["key_hash"]),
            close_reason=v.get("close_reason"),
        )


@dataclass(frozen=True)
class FileRef:
    """A received file; pass `raw` back to `Host.download_file` unchanged."""

    size: int
    raw: Dict[str, Any]


@dataclass(frozen=True)
class Message:
    """A message from the peer, whatever layer it came in."""

    random_id: int
    date: int
    text: str
    entities: List[Dict[str, Any]]
    ttl: int
    silent: bool
    layer: int
    reply_to_random_id: Optional[int] = None
    media: Optional[Dict[str, Any]] = None
    file: Optional[FileRef] = None
    raw: Dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_json(v: Dict[str, Any]) -> "Message":
        f = v.get("file")
        reply = v.get("reply_to_random_id")
        return Message(
            random_id=int(v["random_id"]),
            date=int(v.get("date", 0)),
            text=v["text"],
            entities=v.get("entities", []),
            ttl=int(v.get("ttl", 0)),
            silent=bool(v.get("silent", False)),
            layer=int(v.get("layer", 0)),
            reply_to_random_id=int(reply) if reply is not None else None,
            media=v.get("media"),
            file=FileRef(size=int(f["plain_size"]), raw=f) if f else None,
            raw=v,
        )


@dataclass(frozen=True)
class Event:
    """An event line. `type` is its `@type` (`updateNewMessage`, `updateSecretChat`, ...);
    `seq` is set for stored events, which must be acknowledged with `Host.ack` once handled."""

    type: str
    seq: Optional[int]
    account: int
    secret_chat_id: int
    secret_chat: Optional[SecretChat]
    message: Optional[Message]
    raw: Dict[str, Any]

    @staticmethod
    def from_json(v: Dict[str, Any]) -> "Event":
        seq = v.get("seq")
        chat = v.get("secret_chat")
        msg = v.get("message")
        return Event(
            type=v["@type"],
            seq=int(seq) if seq is not None else None,
            account=int(v["account"]),
            secret_chat_id=int(v["secret_chat_id"]),
            secret_chat=SecretChat.from_json(chat) if chat else None,
            message=Message.from_json(msg) if msg else None,
            raw=v,
        )


InvokeFn = Callable[[int, bytes, Optional[int]], Awaitable[bytes]]


class _Lines:
    """A child process speaking JSON lines: requests with answers matched by `@extra`."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self._ids = itertools.count(1)
        self._waiting: Dict[str, asyncio.Future] = {}
        self._write_lock = asyncio.Lock()

    async def send(self, obj: Dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        async with self._write_lock:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            await self.proc.stdin.drain()

    async def request(self, obj: Dict[str, Any]) -> Dict[str, Any]:
        extra = f"py-{next(self._ids)}"
        fut = asyncio.get_running_loop().create_future()
        self._waiting[extra] = fut
        try:
            await self.send({**obj, "@extra": extra})
            answer = await fut
        finally:
            self._waiting.pop(extra, None)
        if answer.get("@type") == "error":
            raise HostError(int(answer["code"]), answer["message"])
        return answer

    def answered(self, obj: Dict[str, Any]) -> bool:
        """Resolves the request `obj` answers, if any."""
        extra = obj.get("@extra")
        if isinstance(extra, str) and extra in self._waiting:
            fut = self._waiting[extra]
            if not fut.done():
                fut.set_result(obj)
            return True
        return False

    def fail_all(self, exc: BaseException) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(exc)


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=MAX_LINE + 1024,
    )


class Host:
    """A running `secretchat host` process."""

    def __init__(self, proc: asyncio.subprocess.Process, invoke: InvokeFn, max_events: int):
        self._lines = _Lines(proc)
        self._invoke = invoke
        # The reader never waits on the application (it also carries the answers and the
        # invokes the application's requests wait for); `max_events` 0 is unbounded.
        self._events: asyncio.Queue = asyncio.Queue(maxsize=max_events)
        self._reader = asyncio.create_task(self._read())
        self._calls: set = set()
        self.closed = asyncio.Event()

    @property
    def pid(self) -> int:
        return self._lines.proc.pid

    @staticmethod
    async def start(
        binary: str,
        data_dir: str,
        invoke: InvokeFn,
        *,
        durability: str = "group",
        at_rest_key_file: Optional[str] = None,
        max_events: int = 0,
    ) -> "Host":
        """Starts `binary host --data-dir DATA_DIR`; `invoke(account, request, dc_id)` carries
        each server call (raw TL bytes in, raw TL bytes out) to data center `dc_id`, or to the
        account's home DC when it is None."""
        args = [binary, "host", "--data-dir", data_dir, "--durability", durability]
        if at_rest_key_file:
            args += ["--at-rest-key-file", at_rest_key_file]
        return Host(await _spawn(*args), invoke, max_events)

    async def _read(self) -> None:
        out = self._lines.proc.stdout
        assert out is not None
        try:
            while True:
                line = await out.readline()
                if not line:
                    break
                try:
                    await self._dispatch(json.loads(line))
                except (ValueError, KeyError, TypeError) as e:
                    # A line this client does not understand (a newer host?): skip it.
                    logging.getLogger(__name__).warning("unreadable line from the host: %s", e)
        finally:
            self.closed.set()
            self._lines.fail_all(HostError(503, "the host process ended"))
            await self._events.put(None)

    async def _dispatch(self, obj: Dict[str, Any]) -> None:
        kind = obj.get("@type")
        if kind == "invoke":
            task = asyncio.create_task(self._carry(obj))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
        elif kind == "closed":
            self.closed.set()
        elif self._lines.answered(obj):
            pass
        elif kind == "error":
            # A refused line without `@extra` (an answer-less line such as pushUpdate).
            logging.getLogger(__name__).warning("the host refused a line: %s", obj.get("message"))
        else:
            await self._events.put(Event.from_json(obj))

    async def _carry(self, obj: Dict[str, Any]) -> None:
        call_id = obj["id"]
        try:
            dc = obj.get("dc_id")
            answer = await self._invoke(int(obj["account"]), bytes.fromhex(obj["tl"]),
                                        int(dc) if dc is not None else None)
            reply = {"@type": "invokeResult", "id": call_id, "tl": answer.hex()}
        except RpcError as e:
            reply = {"@type": "invokeError", "id": call_id, "code": e.code, "message": e.message}
        except Exception:  # the connection failed: a transport error, retried by the engine
            reply = {"@type": "invokeError", "id": call_id, "code": -503, "message": "TRANSPORT"}
        try:
            await self._lines.send(reply)
        except (ConnectionError, RuntimeError):
            pass

    async def events(self) -> AsyncIterator[Event]:
        """The engine's events until the process ends."""
        while True:
            e = await self._events.get()
            if e is None:
                return
            yield e

    async def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event (None once the process ended)."""
        return await asyncio.wait_for(self._events.get(), timeout)

    # Requests -------------------------------------------------------------------------

    async def add_account(self, account: int) -> None:
        await self._lines.request({"@type": "addAccount", "account": str(account)})

    async def remove_account(self, account: int) -> int:
        r = await self._lines.request({"@type": "removeAccount", "account": str(account)})
        return int(r["secret_chats"])

    async def push_update(self, account: int, tl: bytes) -> None:
        """Hands the engine one of the account's updates (a boxed `Update`, raw TL)."""
        await self._lines.send({"@type": "pushUpdate", "account": str(account), "tl": tl.hex()})

    async def catch_up(self, account: int) -> None:
        """The host's connection for the account dropped: updates pushed meanwhile are lost,
        so the engine asks for the difference at its next gap check (not its idle poll)."""
        await self._lines.send({"@type": "catchUp", "account": str(account)})

    async def create_secret_chat(self, account: int, user_id: int, access_hash: int) -> SecretChat:
        r = await self._lines.request(
            {
                "@type": "createSecretChat",
                "account": str(account),
                "user_id": str(user_id),
                "access_hash": str(access_hash),
            }
        )
        return SecretChat.from_json(r)

    async def _chat_request(self, kind: str, account: int, chat: int, **more: Any) -> Dict[str, Any]:
        return await self._lines.request(
            {"@type": kind, "account": str(account), "secret_chat_id": str(chat), **more}
        )

    async def accept_secret_chat(self, account: int, chat: int) -> None:
        await self._chat_request("acceptSecretChat", account, chat)

    async def decline_secret_chat(self, account: int, chat: int) -> None:
        await self._chat_request("declineSecretChat", account, chat)

    async def close_secret_chat(self, account: int, chat: int, delete_history: bool = False) -> None:
        await self._chat_request("closeSecretChat", account, chat, delete_history=delete_history)

    async def rekey(self, account: int, chat: int) -> None:
        await self._chat_request("rekey", account, chat)

    async def get_secret_chat(self, account: int, chat: int) -> SecretChat:
        return SecretChat.from_json(await self._chat_request("getSecretChat", account, chat))

    async def send_message(
        self,
        account: int,
        chat: int,
        text: str,
        *,
        random_id: Optional[int] = None,
        reply_to_random_id: Optional[int] = None,
        ttl: Optional[int] = None,
        silent: bool = False,
        entities: Optional[List[Dict[str, Any]]] = None,
    ) -> int:
        """Sends a text; returns its random_id once it is stored (then it is delivered
        exactly once, whatever happens)."""
        more: Dict[str, Any] = {"text": text, "silent": silent}
        if random_id is not None:
            more["random_id"] = str(random_id)
        if reply_to_random_id is not None:
            more["reply_to_random_id"] = str(reply_to_random_id)
        if ttl is not None:
            more["ttl"] = ttl
        if entities is not None:
            more["entities"] = entities
        r = await self._chat_request("sendMessage", account, chat, **more)
        return int(r["random_id"])

    async def send_file(
        self,
        account: int,
        chat: int,
        path: str,
        *,
        mime_type: str = "application/octet-stream",
        caption: str = "",
        random_id: Optional[int] = None,
    ) -> int:
        more: Dict[str, Any] = {"path": path, "mime_type": mime_type, "caption": caption}
        if random_id is not None:
            more["random_id"] = str(random_id)
        r = await self._chat_request("sendFile", account, chat, **more)
        return int(r["random_id"])

    async def download_file(self, account: int, file: FileRef, path: str) -> None:
        await self._lines.request(
            {"@type": "downloadFile", "account": str(account), "file": file.raw, "path": path}
        )

    async def mark_read(self, account: int, chat: int, random_ids: List[int]) -> None:
        await self._chat_request("markRead", account, chat, random_ids=[str(i) for i in random_ids])

    async def ack(self, *seqs: int) -> None:
        """These events are handled: they never come again (one store write for all);
        returns once stored."""
        if len(seqs) == 1:
            await self._lines.request({"@type": "ack", "seq": str(seqs[0])})
        elif seqs:
            await self._lines.request({"@type": "ack", "seqs": [str(s) for s in seqs]})

    async def close(self) -> None:
        """Graceful shutdown: the engine stores what it was doing; waits for `closed`."""
        await self._lines.send({"@type": "close"})
        await self.closed.wait()
        if self._lines.proc.stdin is not None:
            self._lines.proc.stdin.close()
        await self._lines.proc.wait()

    def kill(self) -> None:
        """SIGKILL (for crash tests)."""
        self._lines.proc.kill()

    async def wait(self) -> int:
        return await self._lines.proc.wait()


class SimServer:
    """`secretchat sim-server`: the project's simulated Telegram server behind JSON lines, to
    test a host without Telegram. `on_update(user, tl)` receives each user's updates."""

    def __init__(self, proc: asyncio.subprocess.Process, on_update: Callable[[int, bytes], Awaitable[None]]):
        self._lines = _Lines(proc)
        self._on_update = on_update
        self._calls: Dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @staticmethod
    async def start(binary: str, on_update: Callable[[int, bytes], Awaitable[None]], drop: float = 0.0) -> "SimServer":
        proc = await _spawn(binary, "sim-server", "--drop", str(drop))
        return SimServer(proc, on_update)

    async def _read(self) -> None:
        out = self._lines.proc.stdout
        assert out is not None
        while True:
            line = await out.readline()
            if not line:
                break
            obj = json.loads(line)
            kind = obj.get("@type")
            if kind == "pushUpdate":
                await self._on_update(int(obj["user"]), bytes.fromhex(obj["tl"]))
            elif kind in ("invokeResult", "invokeError"):
                fut = self._calls.pop(str(obj["id"]), None)
                if fut is not None and not fut.done():
                    fut.set_result(obj)
            else:
                self._lines.answered(obj)
        self._lines.fail_all(HostError(503, "the simulated server ended"))

    async def connect(self, user: int) -> None:
        await self._lines.request({"@type": "connect", "user": str(user)})

    async def invoke(self, user: int, request: bytes) -> bytes:
        call_id = f"c{next(self._ids)}"
        fut = asyncio.get_running_loop().create_future()
        self._calls[call_id] = fut
        await self._lines.send({"@type": "invoke", "user": str(user), "id": call_id, "tl": request.hex()})
        answer = await fut
        if answer["@type"] == "invokeError":
            raise RpcError(int(answer["code"]), answer["message"])
        return bytes.fromhex(answer["tl"])

    async def close(self) -> None:
        if self._lines.proc.stdin is not None:
            self._lines.proc.stdin.close()
        await self._lines.proc.wait()
