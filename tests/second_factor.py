"""TOTP codes for tests that sign the same user in more than once.

A code signs in once (RFC 6238, 5.2; ``fanli.users.auth``), so a test that signs a user in
again within the same 30 seconds needs another code: the one for the next time step, which the
server still accepts (it allows for a clock one step off either way). Three sign-ins of one user
fit in a step this way: the previous step's code, this one's, the next one's.
"""

from __future__ import annotations

import datetime as dt
import time

import pyotp

_last_step: dict[str, int] = {}


def fresh_code(secret: str) -> str:
    """A code for ``secret`` that no sign-in of this test run has used yet."""
    totp = pyotp.TOTP(secret)
    now = dt.datetime.now(dt.UTC)
    if totp.interval - now.timestamp() % totp.interval < 2:
        # The step is about to turn: the code for the step before would be out of the window.
        time.sleep(totp.interval - now.timestamp() % totp.interval + 0.1)
        now = dt.datetime.now(dt.UTC)
    current = totp.timecode(now)
    step = max(current - 1, _last_step.get(secret, current - 2) + 1)
    assert step <= current + 1, "more than three sign-ins of one user within 30 seconds"
    _last_step[secret] = step
    return totp.generate_otp(step)
