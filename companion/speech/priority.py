"""Transcription yields the cores to the people waiting on a page.

Whisper passes are long and can wait a little; a request cannot. Transcription runs in threads
of its own, each at a lower scheduling priority (a higher nice value, per thread on Linux), so
that on a busy machine the requests' threads get the cores first. The model's own worker
threads are started from these threads and inherit their priority.
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
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: run at the same rank
        log.debug("Transcription keeps the requests' priority (%s).", exc)


# Live streams' passes and drafts: as many at once as there can be streams transcribing.
_live = ThreadPoolExecutor(max_workers=8, thread_name_prefix="live", initializer=lower_this_thread)


async def in_speech_thread(work: Callable[[], T]) -> T:
    """Run blocking transcription work in a lower-priority thread and wait for it."""
    return await asyncio.get_running_loop().run_in_executor(_live, work)
