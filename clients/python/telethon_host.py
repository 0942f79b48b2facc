"""Secret chats on a Telethon session through `secretchat host` (an example: written against
Telethon 1.x, not run against Telegram from this repository; the client library it uses is
tested in test_host.py; `engine_difference` was checked by hand against Telethon 1.45's types
with a stand-in client: its narrowed answer decodes with `secretchat tl decode`, the real one
does not).

    pip install telethon
    API_ID=... API_HASH=... PHONE=+... python3 telethon_host.py /path/to/secretchat ./secret-data

It accepts every secret chat, prints the key image to compare with the peer's screen, and
echoes texts. Bots cannot have secret chats: log in as a user.
"""

import asyncio
import os
import struct
import sys
from typing import Optional

from telethon import TelegramClient, events, errors  # type: ignore
from telethon.tl import functions, types  # type: ignore
from telethon.tl.tlobject import TLRequest  # type: ignore

from secretchat_host import Host, RpcError

SECRET_UPDATES = (
    "UpdateNewEncryptedMessage",
    "UpdateEncryption",
    "UpdateEncryptedMessagesRead",
    "UpdateEncryptedChatTyping",
)
ACCOUNT = 1
GET_DIFFERENCE = struct.pack("<I", 0x19C2F763)


class RawRequest(TLRequest):
    """Sends bytes the engine serialized; returns the answer's bytes unparsed."""

    CONSTRUCTOR_ID = 0
    SUBCLASS_OF_ID = 0

    def __init__(self, data: bytes):
        self.data = data

    def _bytes(self) -> bytes:
        return self.data

    @staticmethod
    def read_result(reader):  # noqa: D401 - Telethon's hook
        return reader.read()


async def engine_difference(client, common: dict, request: bytes) -> bytes:
    """The engine's `updates.getDifference` completed for Telegram (docs/host.md, step 5): a
    real pts and date kept in `common` for these requests only, `pts_total_limit = 100`, and
    the answer narrowed to what the engine reads."""
    flags, = struct.unpack_from("<i", request, 4)
    at = 12 + 4 * (bool(flags & 2) + bool(flags & 1))  # after pts and the pts limits
    _date, qts = struct.unpack_from("<ii", request, at)
    qts_limit = struct.unpack_from("<i", request, at + 8)[0] if flags & 4 else None
    for _ in range(3):
        if not common:
            s = await client(functions.updates.GetStateRequest())
            common.update(pts=s.pts, date=s.date)
        d = await client(functions.updates.GetDifferenceRequest(
            pts=common["pts"], date=common["date"], qts=qts, pts_total_limit=100,
            qts_limit=qts_limit))
        if isinstance(d, types.updates.DifferenceTooLong):
            common["pts"] = d.pts
            continue
        if isinstance(d, types.updates.DifferenceEmpty):
            common["date"] = d.date
            return bytes(d)
        slice_ = isinstance(d, types.updates.DifferenceSlice)
        state = d.intermediate_state if slice_ else d.state
        common.update(pts=state.pts, date=state.date)
        kept = dict(new_messages=[], new_encrypted_messages=d.new_encrypted_messages,
                    other_updates=[u for u in d.other_updates
                                   if type(u).__name__ in SECRET_UPDATES],
                    chats=[], users=[])
        if slice_:
            return bytes(types.updates.DifferenceSlice(intermediate_state=state, **kept))
        return bytes(types.updates.Difference(state=state, **kept))
    raise RpcError(-503, "DIFFERENCE_TOO_LONG")


async def main(binary: str, data_dir: str) -> None:
    client = TelegramClient("secretchat-example", int(os.environ["API_ID"]), os.environ["API_HASH"],
                            # Telethon's own catch-up passes the qts it last saw, which
                            # acknowledges encrypted messages the engine may not have stored
                            # (docs/host.md, "What the host must do"): leave catching up to the engine.
                            catch_up=False)
    await client.start(phone=os.environ["PHONE"])

    # The common state of the engine's getDifference requests only (docs/host.md, step 5).
    common: dict = {}

    async def invoke(account: int, request: bytes, dc_id: Optional[int]) -> bytes:
        try:
            if request[:4] == GET_DIFFERENCE:
                return await engine_difference(client, common, request)
            if dc_id is not None and dc_id != client.session.dc_id:
                # A file on another DC: Telethon's own sender there, authorization copied.
                sender = await client._borrow_exported_sender(dc_id)
                try:
                    return await client._call(sender, RawRequest(request))
                finally:
                    await client._return_exported_sender(sender)
            return await client(RawRequest(request))
        except errors.FloodWaitError as e:
            raise RpcError(420, f"FLOOD_WAIT_{e.seconds}")
        except errors.RPCError as e:
            raise RpcError(e.code or 400, e.message or type(e).__name__)

    host = await Host.start(binary, data_dir, invoke)
    await host.add_account(ACCOUNT)

    @client.on(events.Raw)
    async def forward(update) -> None:
        if type(update).__name__ in SECRET_UPDATES:
            await host.push_update(ACCOUNT, bytes(update))

    async for e in host.events():
        if e.type == "updateSecretChatRequested":
            await host.accept_secret_chat(e.account, e.secret_chat_id)
        elif e.type == "updateSecretChatReady":
            key = e.raw["key_hash"]
            print("compare with the peer's screen:", " ".join(key[i:i + 8] for i in range(0, 64, 8)))
        elif e.type == "updateNewMessage" and e.message and e.message.text:
            await host.send_message(e.account, e.secret_chat_id, "echo: " + e.message.text,
                                    reply_to_random_id=e.message.random_id)
        if e.seq is not None:
            await host.ack(e.seq)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
