"""Transcription yields the cores to the people waiting on a page.

Whisper passes are long and can wait a little; a request cannot. Transcription runs in threads
of its own, each under Linux's SCHED_IDLE policy (per thread), so that on a busy machine the
requests' threads get the cores first. The model's own worker threads are started from these
threads and inherit their policy.

Why not only a higher nice value: with it (nice 10) a request thread that woke up still waited
behind a running Whisper thread for the rest of its time slice, at every wake-up (each database
call, each hand-over of the interpreter's lock). bench/load.py with live audio measured the
requests' threads waiting for a core about as long as they ran. A SCHED_IDLE thread gives the
core up at once to any other that wakes; where that policy is refused, nice is the fallback.
The cost: on a machine saturated by requests, transcription waits until they are served (live
mode then catches up, its drafts skipped).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)

NICE = 10  # CFS gives a nice-0 thread about ten times the share of a nice-10 one
T = TypeVar("T")


def lower_this_thread() -> None:
    """This thread, and the threads it starts from now on, behind the requests."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError) as exc:
        log.debug("No SCHED_IDLE for transcription (%s); a nice value instead.", exc)
    try:
        os.setpriority(os.PRIO_PROCESS, tid, NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: run at the same rank
        log.debug("Transcription keeps the requests' priority (%s).", exc)


# Live streams' passes and drafts: as many at once as there can be streams transcribing.
_live = ThreadPoolExecutor(max_workers=8, thread_name_prefix="live", initializer=lower_this_thread)


async def in_speech_thread(work: Callable[[], T]) -> T:
    """Run blocking transcription work in a lower-priority thread and wait for it."""
    return await asyncio.get_running_loop().run_in_executor(_live, work)
