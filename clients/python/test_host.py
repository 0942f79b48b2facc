"""Two `secretchat host` processes (Alice, account 1 / user 1; Bob, account 2 / user 2) whose
server calls and updates a relay carries to `secretchat sim-server`: request, accept, the key
image, messages both ways, a file, a re-key, Bob's host killed and restarted mid-conversation;
nothing lost, nothing handed out again after its acknowledgement.

Run: SECRETCHAT_BIN=path/to/secretchat python3 -m unittest discover -s clients/python
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import unittest
from typing import Dict, List, Optional, Set

from secretchat_host import Event, Host, HostError, SimServer

BIN = os.environ.get("SECRETCHAT_BIN", "secretchat")
# `upload.getFile`, the call a download makes for each part.
UPLOAD_GET_FILE = (0xBE5335BE).to_bytes(4, "little")
TIMEOUT = 30.0


class Party:
    """One user: a host process, its account, and what its application saw."""

    def __init__(self, name: str, account: int, user: int, data_dir: str, sim: SimServer):
        self.name, self.account, self.user = name, account, user
        self.data_dir = data_dir
        self.sim = sim
        self.host: Optional[Host] = None
        self.chat: Optional[int] = None
        self.key_hash: Optional[bytes] = None
        self.texts: List[str] = []
        self.dates: List[int] = []
        self.download_dcs: List[Optional[int]] = []
        self.handled: Set[int] = set()
        self.acked: Set[int] = set()
        self.redelivered_after_ack: List[int] = []
        self.files: List[bytes] = []
        self.rekeyed = 0
        self.events: "asyncio.Queue[Event]" = asyncio.Queue()
        self._pump: Optional[asyncio.Task] = None

    async def start(self) -> None:
        async def invoke(account: int, request: bytes, dc_id: Optional[int]) -> bytes:
            assert account == self.account
            if request[:4] == UPLOAD_GET_FILE:
                self.download_dcs.append(dc_id)
            return await self.sim.invoke(self.user, request)

        self.host = await Host.start(BIN, self.data_dir, invoke)
        await self.host.add_account(self.account)
        self._pump = asyncio.create_task(self._handle_events(self.host))

    async def push(self, tl: bytes) -> None:
        host = self.host
        if host is None or host.closed.is_set():
            return  # the host is down: the engine catches up with getDifference later
        try:
            await host.push_update(self.account, tl)
        except (ConnectionError, RuntimeError, BrokenPipeError):
            pass

    async def _handle_events(self, host: Host) -> None:
        async for e in host.events():
            if e.type == "updateSecretChatRequested":
                self.chat = e.secret_chat_id
                await host.accept_secret_chat(e.account, e.secret_chat_id)
            elif e.type == "updateSecretChatReady":
                self.key_hash = bytes.fromhex(e.raw["key_hash"])
            elif e.type == "updateNewMessage" and e.message is not None:
                m = e.message
                if m.random_id in self.acked:
                    self.redelivered_after_ack.append(m.random_id)
                if m.random_id not in self.handled:
                    self.handled.add(m.random_id)
                    self.dates.append(m.date)
                    if m.file is not None:
                        path = os.path.join(self.data_dir, f"in-{m.random_id}")
                        await host.download_file(e.account, m.file, path)
                        with open(path, "rb") as f:
                            self.files.append(f.read())
                    else:
                        self.texts.append(m.text)
            elif e.type == "updateRekeyed":
                self.rekeyed += 1
            await self.events.put(e)
            if e.seq is not None:
                await host.ack(e.seq)
                if e.message is not None:
                    self.acked.add(e.message.random_id)

    async def kill(self) -> None:
        assert self.host is not None
        host, self.host = self.host, None
        host.kill()
        await host.wait()
        if self._pump is not None:
            try:
                await asyncio.wait_for(self._pump, TIMEOUT)
            except HostError:
                pass  # a request of the application's was cut off by the kill

    async def stop(self) -> None:
        if self.host is not None:
            await asyncio.wait_for(self.host.close(), TIMEOUT)
        if self._pump is not None:
            await asyncio.wait_for(self._pump, TIMEOUT)


async def until(check, what: str, timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class HostTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.parties: Dict[int, Party] = {}

        async def on_update(user: int, tl: bytes) -> None:
            party = self.parties.get(user)
            if party is not None:
                await party.push(tl)

        self.sim = await SimServer.start(BIN, on_update)
        for name, n in (("alice", 1), ("bob", 2)):
            d = os.path.join(self.tmp.name, name)
            os.makedirs(d)
            self.parties[n] = Party(name, account=n, user=n, data_dir=d, sim=self.sim)
            await self.sim.connect(n)

    async def asyncTearDown(self) -> None:
        for p in self.parties.values():
            try:
                await p.stop()
            except Exception:
                if p.host is not None:
                    p.host.kill()
        await self.sim.close()
        self.tmp.cleanup()

    async def test_a_secret_chat_through_two_hosts(self) -> None:
        alice, bob = self.parties[1], self.parties[2]
        await alice.start()
        await bob.start()
        assert alice.host is not None

        chat = await alice.host.create_secret_chat(1, user_id=2, access_hash=0)
        self.assertEqual((chat.state, chat.is_outbound, chat.user_id), ("pending", True, 2))
        alice.chat = chat.id
        await until(lambda: alice.key_hash and bob.key_hash, "both sides ready")
        self.assertEqual(len(alice.key_hash or b""), 36)
        self.assertEqual(alice.key_hash, bob.key_hash)
        ready = await alice.host.get_secret_chat(1, chat.id)
        self.assertEqual(ready.state, "ready")

        # Messages both ways.
        for i in range(10):
            await alice.host.send_message(1, chat.id, f"a{i}")
            assert bob.host is not None and bob.chat is not None
            await bob.host.send_message(2, bob.chat, f"b{i}")
        await until(lambda: len(bob.texts) == 10 and len(alice.texts) == 10, "20 texts")
        self.assertEqual(bob.texts, [f"a{i}" for i in range(10)])
        self.assertEqual(alice.texts, [f"b{i}" for i in range(10)])
        # Each carries the server's date (the simulated clock starts at 1_700_000_000).
        self.assertTrue(all(d >= 1_700_000_000 for d in bob.dates + alice.dates), bob.dates)

        # A file of two parts.
        body = bytes(i % 251 for i in range(700_000))
        path = os.path.join(alice.data_dir, "out.bin")
        with open(path, "wb") as f:
            f.write(body)
        await alice.host.send_file(1, chat.id, path, caption="two parts")
        await until(lambda: bob.files, "the file")
        self.assertEqual(bob.files[0], body)
        # Every part was asked of the file's data center (the simulator keeps files on DC 2).
        self.assertTrue(bob.download_dcs, "the download made calls")
        self.assertEqual(set(bob.download_dcs), {2})

        # A re-key, seen on both sides.
        await alice.host.rekey(1, chat.id)
        await until(lambda: alice.rekeyed >= 1 and bob.rekeyed >= 1, "the re-key")

        # Bob's host is killed while Alice keeps sending; it restarts on the same directory.
        await bob.kill()
        for i in range(10, 30):
            await alice.host.send_message(1, chat.id, f"a{i}")
        await bob.start()
        await until(lambda: len(bob.texts) == 30, "the messages sent while Bob was down")
        self.assertEqual(bob.texts, [f"a{i}" for i in range(30)], "each once, in order")
        self.assertEqual(bob.redelivered_after_ack, [], "nothing handed out after its ack")

        # And the chat still works both ways after the restart (Alice's relay also reports a
        # reconnection: accepted without an answer, as an error would come as a line).
        assert bob.host is not None and bob.chat is not None
        await alice.host.catch_up(1)
        await bob.host.send_message(2, bob.chat, "back")
        await until(lambda: "back" in alice.texts, "Bob's message after his restart")

    async def test_bad_input_is_refused_with_typed_errors(self) -> None:
        alice = self.parties[1]
        await alice.start()
        assert alice.host is not None
        with self.assertRaises(HostError) as e:
            await alice.host.get_secret_chat(1, 12345)
        self.assertEqual(e.exception.code, 404)
        with self.assertRaises(HostError) as e:
            await alice.host.send_message(1, 12345, "x", random_id=0)
        self.assertEqual(e.exception.code, 400)
        with self.assertRaises(HostError) as e:
            await alice.host._lines.request({"@type": "sendMessage", "account": "1"})
        self.assertEqual((e.exception.code, e.exception.message), (400, "missing field `secret_chat_id`"))
        with self.assertRaises(HostError) as e:
            await alice.host._lines.request({"@type": "noSuchThing"})
        self.assertEqual(e.exception.code, 400)
        # The host goes on serving.
        chat = await alice.host.create_secret_chat(1, user_id=2, access_hash=0)
        self.assertEqual(chat.state, "pending")


if __name__ == "__main__":
    unittest.main()
