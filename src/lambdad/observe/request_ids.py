"""Request ids: random (version 4) UUIDs in their text form, as Lambda's are.

``new_request_id()`` is ``str(uuid.uuid4())`` without the ``UUID`` object in between (a
third of its cost; every invoke and every answer without an id of its own makes one).
"""

from __future__ import annotations

import os

#: The variant nibble (RFC 4122: binary 10xx) for each value of the random one.
_VARIANT = "89ab" * 4


def new_request_id() -> str:
    """A random UUID, version 4, RFC 4122 variant: ``xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx``."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:]}"
