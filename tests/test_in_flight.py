"""Many open pages and requests at once never exhaust the database pool (issue 14, load).

With two request threads the pool holds 2 x 2 + 8 connections: open event streams must hold
none while they last, and requests beyond those in flight wait without one, or requests
holding connections would wait for threads held by requests waiting for connections.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.web.conftest import serve
from tests.world import PREFIX, Circle

STREAMS = 16  # more open pages than the pool has connections


def test_open_pages_and_a_burst_of_requests_all_answer(tmp_path: Path) -> None:
    with serve(tmp_path, request_threads=2) as served:
        circle = Circle.create(served.api)
        circle.advance_to("presentation")
        token = circle.consultants[0][1]
        auth = {"Authorization": f"Bearer {token}"}
        room = f"{served.url}{PREFIX}{circle.path()}"
        events = f"{served.url}{circle.path('/events')}"
        opened = threading.Barrier(STREAMS + 1, timeout=30)
        stop = threading.Event()

        def page() -> int:
            with httpx.Client(timeout=30) as http, http.stream("GET", events, headers=auth) as res:
                opened.wait()
                for _ in res.iter_lines():
                    if stop.is_set():
                        break
                return res.status_code

        def request(n: int) -> int:
            with httpx.Client(timeout=20) as http:
                if n % 3 == 0:
                    body = {"body": f"Une idée numéro {n} pour le planning."}
                    return http.post(room + "/notes", json=body, headers=auth).status_code
                return http.get(room, headers=auth).status_code

        with ThreadPoolExecutor(STREAMS + 24) as pool:
            pages = [pool.submit(page) for _ in range(STREAMS)]
            opened.wait()  # every page's stream is open
            answers = list(pool.map(request, range(24)))
            stop.set()
            circle.phase("presentation", "end")  # a last event, so each stream reads it
            assert [p.result(timeout=30) for p in pages] == [200] * STREAMS
        assert sorted(set(answers)) == [200, 201]
