"""Messages per second through two `secretchat host` processes relayed by Python to
`secretchat sim-server`, against the same workload in process (`secretchat simulate`: two
accounts, each starting `--chats` chats with the other, `--messages` per chat both ways, no
faults, no files), measured in one run.

    python3 clients/python/bench_host.py --bin target/release/secretchat --chats 8 --messages 400

Prints one JSON object: `in_process_msgs_per_sec`, `relayed_msgs_per_sec`, `ratio`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time

from typing import Dict, List, Optional, Set

from secretchat_host import Host, SimServer


def in_process(binary: str, chats: int, messages: int, window: int) -> float:
    """`simulate` with 2 accounts, each starting `chats` chats with the other, `messages` per
    chat (both directions together)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "run.json")
        subprocess.run(
            [binary, "simulate", "--accounts", "2", "--chats", str(chats), "--messages", str(messages),
             "--file-share", "0", "--drop", "0", "--duplicate", "0", "--reorder", "0",
             "--error-rate", "0", "--lost-reply", "0", "--flood-rate", "0",
             "--window", str(window), "--json", out],
            check=True, stdout=subprocess.DEVNULL,
        )
        with open(out) as f:
            return float(json.load(f)["msgs_per_sec"])


async def relayed(binary: str, chats: int, messages: int, window: int) -> float:
    """The same workload through two host processes: each account starts `chats` chats with
    the other; `messages` per chat, half each way, at most `window` unstored per direction."""
    hosts: Dict[int, Host] = {}
    per_dir = messages // 2
    total = 2 * chats * 2 * per_dir
    received = [0]
    done = asyncio.Event()
    ready: Dict[int, List[int]] = {1: [], 2: []}
    acks: Set[asyncio.Future] = set()
    all_ready = asyncio.Event()

    async def on_update(user: int, tl: bytes) -> None:
        h = hosts.get(user)
        if h is not None:
            await h.push_update(user, tl)

    sim = await SimServer.start(binary, on_update)
    with tempfile.TemporaryDirectory() as d:

        async def pump(account: int, host: Host) -> None:
            async for e in host.events():
                if e.type == "updateSecretChatRequested":
                    await host.accept_secret_chat(account, e.secret_chat_id)
                elif e.type == "updateSecretChatReady":
                    ready[account].append(e.secret_chat_id)
                    if len(ready[1]) == 2 * chats and len(ready[2]) == 2 * chats:
                        all_ready.set()
                elif e.type == "updateNewMessage":
                    received[0] += 1
                    if received[0] >= total:
                        done.set()
                if e.seq is not None:
                    acks.add(asyncio.ensure_future(host.ack(e.seq)))

        for user in (1, 2):
            await sim.connect(user)
            os.makedirs(os.path.join(d, str(user)))

            async def invoke(account: int, request: bytes, dc_id: Optional[int]) -> bytes:
                return await sim.invoke(account, request)

            hosts[user] = await Host.start(binary, os.path.join(d, str(user)), invoke)
            await hosts[user].add_account(user)
        pumps = [asyncio.create_task(pump(u, hosts[u])) for u in (1, 2)]
        for account, peer in ((1, 2), (2, 1)):
            for _ in range(chats):
                await hosts[account].create_secret_chat(account, peer, 0)
        await asyncio.wait_for(all_ready.wait(), 120)
        # Every chat of an account, started or accepted, by its own id.
        mine = ready

        async def sender(account: int) -> None:
            room = asyncio.Semaphore(window)

            async def one(chat: int, i: int) -> None:
                try:
                    await hosts[account].send_message(account, chat, f"m{i}")
                finally:
                    room.release()

            for i in range(per_dir):
                for chat in mine[account]:
                    await room.acquire()
                    asyncio.ensure_future(one(chat, i))

        start = time.monotonic()
        await asyncio.gather(sender(1), sender(2))
        await asyncio.wait_for(done.wait(), 900)
        elapsed = time.monotonic() - start
        await asyncio.gather(*acks)
        for h in hosts.values():
            await h.close()
        for p in pumps:
            await p
    await sim.close()
    return total / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="secretchat")
    ap.add_argument("--chats", type=int, default=8, help="chats each account starts")
    ap.add_argument("--messages", type=int, default=400, help="messages per chat, both ways")
    ap.add_argument("--window", type=int, default=32)
    a = ap.parse_args()
    base = in_process(a.bin, a.chats, a.messages, a.window)
    relay = asyncio.run(relayed(a.bin, a.chats, a.messages, a.window))
    print(json.dumps({
        "chats": 2 * a.chats,
        "messages_per_chat": a.messages,
        "in_process_msgs_per_sec": round(base, 1),
        "relayed_msgs_per_sec": round(relay, 1),
        "ratio": round(relay / base, 3),
    }))


if __name__ == "__main__":
    main()
