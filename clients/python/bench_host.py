"""Messages per second through two `secretchat host` processes relayed by Python to
`secretchat sim-server`, against the same workload in process (`secretchat simulate`: one
chat, both directions, no faults, no files), measured in one run.

    python3 clients/python/bench_host.py --bin target/release/secretchat --messages 4000

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

from secretchat_host import Host, SimServer


def in_process(binary: str, messages: int, window: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "run.json")
        subprocess.run(
            [binary, "simulate", "--accounts", "2", "--chats", "1", "--messages", str(messages),
             "--file-share", "0", "--drop", "0", "--duplicate", "0", "--reorder", "0",
             "--error-rate", "0", "--lost-reply", "0", "--flood-rate", "0",
             "--window", str(window), "--json", out],
            check=True, stdout=subprocess.DEVNULL,
        )
        with open(out) as f:
            return float(json.load(f)["msgs_per_sec"])


async def relayed(binary: str, messages: int, window: int) -> float:
    hosts = {}
    received = {1: 0, 2: 0}
    done = asyncio.Event()
    per_side = messages // 2

    async def on_update(user: int, tl: bytes) -> None:
        h = hosts.get(user)
        if h is not None:
            await h.push_update(user, tl)

    sim = await SimServer.start(binary, on_update)
    with tempfile.TemporaryDirectory() as d:
        chats = {}
        ready = asyncio.Event()

        async def pump(account: int, host: Host) -> None:
            async for e in host.events():
                if e.type == "updateSecretChatRequested":
                    chats[account] = e.secret_chat_id
                    await host.accept_secret_chat(account, e.secret_chat_id)
                elif e.type == "updateSecretChatReady" and len(chats) == 2:
                    ready.set()
                elif e.type == "updateNewMessage":
                    received[account] += 1
                    if received[1] >= per_side and received[2] >= per_side:
                        done.set()
                if e.seq is not None:
                    asyncio.ensure_future(host.ack(e.seq))

        for user in (1, 2):
            await sim.connect(user)
            os.makedirs(os.path.join(d, str(user)))

            async def invoke(account: int, request: bytes) -> bytes:
                return await sim.invoke(account, request)

            hosts[user] = await Host.start(binary, os.path.join(d, str(user)), invoke)
            await hosts[user].add_account(user)
        pumps = [asyncio.create_task(pump(u, hosts[u])) for u in (1, 2)]
        chat = await hosts[1].create_secret_chat(1, 2, 0)
        chats[1] = chat.id
        await asyncio.wait_for(ready.wait(), 60)

        async def sender(account: int) -> None:
            room = asyncio.Semaphore(window)

            async def one(i: int) -> None:
                try:
                    await hosts[account].send_message(account, chats[account], f"m{i}")
                finally:
                    room.release()

            for i in range(per_side):
                await room.acquire()
                asyncio.ensure_future(one(i))

        start = time.monotonic()
        await asyncio.gather(sender(1), sender(2))
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.monotonic() - start
        for h in hosts.values():
            await h.close()
        for p in pumps:
            await p
    await sim.close()
    return 2 * per_side / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="secretchat")
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--window", type=int, default=32)
    a = ap.parse_args()
    base = in_process(a.bin, a.messages, a.window)
    relay = asyncio.run(relayed(a.bin, a.messages, a.window))
    print(json.dumps({
        "messages": a.messages,
        "in_process_msgs_per_sec": round(base, 1),
        "relayed_msgs_per_sec": round(relay, 1),
        "ratio": round(relay / base, 3),
    }))


if __name__ == "__main__":
    main()
