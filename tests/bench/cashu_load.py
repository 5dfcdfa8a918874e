"""Load for the Cashu rail: Nutshell's wallet mints one token per request at the mint, then
each chat request is paid with its own `X-Cashu` token and its change read back; latency per
request (client side), at 1 and at N concurrent clients.

Usage: python cashu_load.py <gateway URL> <mint URL> <requests> <concurrency>
"""

import asyncio
import statistics
import sys
import tempfile
import time

import httpx
from cashu.wallet.wallet import Wallet

SATS = 64
BODY = {"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}


async def tokens(mint: str, count: int) -> list[str]:
    wallet = await Wallet.with_db(url=mint, db=tempfile.mkdtemp(), name="load")
    await wallet.load_mint()
    out = []
    for _ in range(count):
        quote = await wallet.request_mint(SATS)
        proofs = await wallet.mint(SATS, quote_id=quote.quote)
        out.append(await wallet.serialize_proofs(proofs))
    return out


async def run(gateway: str, batch: list[str], concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(batch)
    async with httpx.AsyncClient(timeout=60) as http:

        async def client() -> None:
            while queue:
                token = queue.pop()
                started = time.perf_counter()
                answer = await http.post(
                    f"{gateway}/v1/chat/completions", json=BODY, headers={"X-Cashu": token}
                )
                latencies.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
                assert answer.headers["x-cashu"].startswith("cashu"), answer.headers

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def report(label: str, latencies: list[float], elapsed: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    print(
        f"| {label} | {len(ms)} | {len(ms) / elapsed:,.0f} | {statistics.median(ms):.1f} ms "
        f"| {pick(0.9):.1f} ms | {pick(0.99):.1f} ms |"
    )


async def main(gateway: str, mint: str, count: int, concurrency: int) -> None:
    batch = await tokens(mint, 2 * count)
    print("| clients | requests | requests/s | p50 | p90 | p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    report("1", *await run(gateway, batch[:count], 1))
    report(str(concurrency), *await run(gateway, batch[count:], concurrency))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
