"""What a payload is as JSON, answered in place or by a helper process.

Three questions: ``json_error``, the invoke check itself; ``embedding``, how a payload goes
into a larger JSON document (a destination record); ``error_message``, the message of an error
response (a dead letter's attribute). ``JsonChecker`` answers them in a helper process for
payloads too large for the event loop: a parse in a thread would hold the GIL (no JSON parser
releases it), so it would stall the loop just as long. The helper is a plain interpreter
running ``serve()`` of this module, started on first use; it reads frames (8 bytes: the
question's number in the top byte, the payload's length below it; then the payload) from its
stdin and answers each with a 4-byte length and the answer: AWS's message in UTF-8 (length 0:
the payload is JSON), the payload's embedding (length 0: the payload itself), or the error
message in UTF-8. It exits when idle for ``IDLE_EXIT`` seconds or when its stdin closes
(lambdad closed it or went away), so it never outlives lambdad.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import json
import logging
import os
import select
import sys
from pathlib import Path

import msgspec

#: The helper exits after this long without a payload (it is started again when needed).
IDLE_EXIT = 120.0
#: A helper that has not answered within this long is replaced (a 6 MB check takes < 0.1 s).
ANSWER_TIMEOUT = 30.0
#: How much lower the helper's CPU priority is than lambdad's.
HELPER_NICENESS = 10
#: The helper's stdin pipe is grown to this size (Linux's default cap for unprivileged users).
PIPE_SIZE = 1024 * 1024

#: How AWS's messages for a body its JSON parser (Jackson) refused begin.
PARSE_PREFIX = "Could not parse request body into json: Could not parse payload into json: "
#: Jackson's refusal of a document nested deeper than it allows (1,000 levels).
TOO_DEEP = "Document nesting depth exceeds the maximum allowed (1000)"
#: The questions' numbers, put in the top byte of a frame's 8-byte length.
_CHECK, _EMBED, _ERROR_MESSAGE = 0, 1, 2
_QUESTION_SHIFT = 56
_SERVE = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from lambdad.invoke.json_check import serve; serve()"
)
#: The directory lambdad's package is in, put first on the helper's ``sys.path``.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

log = logging.getLogger(__name__)


#: Decoding into ``msgspec.Raw`` checks the syntax of one whole JSON value without building
#: any Python object (about 10x faster than json.loads). (Wrapping the payload as
#: ``{"_": payload}`` into a struct, as before, let ``1,"b":2`` through as JSON.)
_skim = msgspec.json.Decoder(msgspec.Raw)


class _ErrorBody(msgspec.Struct):
    """The one member read from an error response; msgspec skips the rest without building it."""

    message: object = msgspec.field(name="errorMessage", default=None)


_error_body = msgspec.json.Decoder(_ErrorBody)


def is_standard(payload: bytes) -> bool:
    """Whether ``payload`` is one standard JSON value (RFC 8259) in UTF-8, so that it can be put
    into a larger JSON document as it is. msgspec's skim does not look inside strings, hence
    the UTF-8 check. Nesting deeper than the parser's recursion limit counts as not standard.
    """
    try:
        _skim.decode(payload)
        payload.decode("utf-8")
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


def json_error(payload: bytes) -> str | None:
    """AWS's message for a payload that is not JSON, or None when it is JSON.

    The fast path is ``is_standard``; only a payload that fails it is parsed with ``json``
    (which also accepts what msgspec refuses and Jackson, AWS's parser, takes: a byte order
    mark, lone surrogate escapes; not ``NaN`` or ``Infinity``, which Jackson refuses by default)
    and described from its error.
    """
    if is_standard(payload):
        return None
    try:
        json.loads(payload, parse_constant=_non_standard)
    except UnicodeDecodeError:
        return PARSE_PREFIX + "Invalid UTF-8 start byte"
    except RecursionError:
        return PARSE_PREFIX + TOO_DEEP
    except ValueError as exc:
        return PARSE_PREFIX + _describe(exc, payload)
    return None


def _non_standard(token: str) -> object:
    raise ValueError(
        f"Non-standard token '{token}': enable JsonParser.Feature.ALLOW_NON_NUMERIC_NUMBERS "
        "to allow"
    )


def _describe(exc: ValueError, payload: bytes) -> str:
    if isinstance(exc, json.JSONDecodeError):
        excerpt = payload[:64].decode("utf-8", "replace")
        return (
            f"Unrecognized token '{excerpt.split()[0] if excerpt.split() else excerpt}': "
            "was expecting (JSON String, Number, Array, Object or token 'null', 'true' or "
            f"'false')\n at [Source: (byte[])\"{excerpt}\"; line: {exc.lineno}, "
            f"column: {exc.colno}]"
        )
    return str(exc)


def embedding(payload: bytes) -> bytes | None:
    """How ``payload`` is carried inside a larger JSON document (a destination record): None
    when it is standard JSON, to be put in as it is; else the JSON of what Python's ``json``
    reads in it (a byte order mark, UTF-16, ``NaN``, a lone surrogate), or of its text when it
    is not JSON (invalid UTF-8 replaced), or ``null`` when it is empty.
    """
    if not payload:
        return b"null"
    if is_standard(payload):
        return None
    try:
        return json.dumps(json.loads(payload)).encode()
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return msgspec.json.encode(payload.decode("utf-8", "replace"))


def error_message(payload: bytes) -> str:
    """The ``errorMessage`` of a payload that is a JSON object with a string one, else the
    payload's text (invalid UTF-8 replaced). Standard JSON is read by msgspec, which builds
    only that member; anything else is read by Python's ``json``, as AWS's error bodies are.
    """
    try:
        message = _error_body.decode(payload).message
        payload.decode("utf-8")
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        try:
            parsed = json.loads(payload)
        except (ValueError, RecursionError):
            parsed = None
        message = parsed.get("errorMessage") if isinstance(parsed, dict) else None
    if isinstance(message, str):
        return message
    return payload.decode("utf-8", "replace")


def _answer_to(question: int, payload: bytes) -> bytes:
    """The helper's answer to ``question`` about ``payload``, as it goes on the pipe."""
    if question == _EMBED:
        return embedding(payload) or b""
    if question == _ERROR_MESSAGE:
        # json reads lone surrogate escapes into the message: they cross the pipe as they are.
        return error_message(payload).encode("utf-8", "surrogatepass")
    return (json_error(payload) or "").encode("utf-8")


# ---- the helper process's side ------------------------------------------------------------


def serve() -> None:
    """The helper's main loop: answer every framed payload on stdin until EOF or idle.

    It runs at a lower CPU priority: on a busy machine the large payload waits for its check,
    not the small invocations running beside it.
    """
    with contextlib.suppress(OSError):
        os.nice(HELPER_NICENESS)
    # Unbuffered: between frames nothing may wait in a Python buffer that select() cannot see.
    stdin, stdout = io.FileIO(sys.stdin.fileno(), "rb", closefd=False), sys.stdout.buffer
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        while select.select([stdin], [], [], IDLE_EXIT)[0]:
            head = _read_exactly(stdin, 8)
            if head is None:
                return
            frame = int.from_bytes(head, "big")
            payload = _read_exactly(stdin, frame & ((1 << _QUESTION_SHIFT) - 1))
            if payload is None:
                return
            answer = _answer_to(frame >> _QUESTION_SHIFT, payload)
            stdout.write(len(answer).to_bytes(4, "big") + answer)
            stdout.flush()


def _read_exactly(stream: io.FileIO, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        count = stream.readinto(view[done:])
        if not count:
            return None
        done += count
    return bytes(buffer)


# ---- lambdad's side -----------------------------------------------------------------------


class JsonChecker:
    """Checks payloads in the helper process, one at a time, starting it when needed.

    If the helper cannot be started or dies twice in a row, the payload is checked in place
    (correct, but on the loop) and a warning is logged.
    """

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def error_of(self, payload: bytes) -> str | None:
        """``json_error(payload)``, computed by the helper."""
        answer = await self._answer(payload, _CHECK)
        if answer is None:
            return json_error(payload)
        return answer.decode("utf-8") or None

    async def embedding_of(self, payload: bytes) -> bytes | None:
        """``embedding(payload)``, computed by the helper."""
        answer = await self._answer(payload, _EMBED)
        if answer is None:
            return embedding(payload)
        return answer or None

    async def error_message_of(self, payload: bytes) -> str:
        """``error_message(payload)``, computed by the helper."""
        answer = await self._answer(payload, _ERROR_MESSAGE)
        if answer is None:
            return error_message(payload)
        return answer.decode("utf-8", "surrogatepass")

    async def _answer(self, payload: bytes, question: int) -> bytes | None:
        """The helper's answer to ``question`` about ``payload``; None if there is no helper
        (closed, or it failed twice): the caller then answers in place."""
        if self._closed:
            return None
        async with self._lock:
            for _attempt in range(2):
                try:
                    async with asyncio.timeout(ANSWER_TIMEOUT):
                        return await self._ask(await self._helper(), payload, question)
                except (OSError, asyncio.IncompleteReadError, RuntimeError, TimeoutError) as exc:
                    log.warning("JSON check helper failed (%r); starting another", exc)
                    await self._discard()
                except asyncio.CancelledError:
                    # A frame half written or an answer unread: this helper's pipes are out
                    # of step, so the next check must not use it.
                    self._abandon()
                    raise
        log.warning("JSON check helper unavailable; checking a %d-byte payload here", len(payload))
        return None

    async def _helper(self) -> asyncio.subprocess.Process:
        if self._closed:
            raise RuntimeError("the JSON check helper is closed")
        proc = self._proc
        if proc is not None and proc.returncode is None:
            return proc
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _SERVE,
            _PACKAGE_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        pipe = proc.stdin.get_extra_info("pipe") if proc.stdin is not None else None
        if pipe is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self._proc = proc
        return proc

    @staticmethod
    async def _ask(proc: asyncio.subprocess.Process, payload: bytes, question: int) -> bytes:
        if proc.stdin is None or proc.stdout is None:
            raise RuntimeError("the JSON check helper has no pipes")
        proc.stdin.write((question << _QUESTION_SHIFT | len(payload)).to_bytes(8, "big"))
        proc.stdin.write(payload)
        await proc.stdin.drain()
        size = int.from_bytes(await proc.stdout.readexactly(4), "big")
        return await proc.stdout.readexactly(size) if size else b""

    def _abandon(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()

    async def close(self) -> None:
        """Stop the helper (later checks run in place). Idempotent."""
        self._closed = True
        async with self._lock:
            await self._discard()
