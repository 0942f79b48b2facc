"""Secret chats on a Telethon session through `secretchat host` (an example: written against
Telethon 1.x, not run against Telegram from this repository; the client library it uses is
tested in test_host.py).

    pip install telethon
    API_ID=... API_HASH=... PHONE=+... python3 telethon_host.py /path/to/secretchat ./secret-data

It accepts every secret chat, prints the key image to compare with the peer's screen, and
echoes texts. Bots cannot have secret chats: log in as a user.
"""

import asyncio
import os
import sys

from telethon import TelegramClient, events, errors  # type: ignore
from telethon.tl.tlobject import TLRequest  # type: ignore

from secretchat_host import Host, RpcError

SECRET_UPDATES = (
    "UpdateNewEncryptedMessage",
    "UpdateEncryption",
    "UpdateEncryptedMessagesRead",
    "UpdateEncryptedChatTyping",
)
ACCOUNT = 1


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


async def main(binary: str, data_dir: str) -> None:
    client = TelegramClient("secretchat-example", int(os.environ["API_ID"]), os.environ["API_HASH"],
                            # Telethon's own catch-up passes the qts it last saw, which
                            # acknowledges encrypted messages the engine may not have stored
                            # (docs/host.md, "What the host must do"): leave catching up to the engine.
                            catch_up=False)
    await client.start(phone=os.environ["PHONE"])

    async def invoke(account: int, request: bytes) -> bytes:
        try:
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
