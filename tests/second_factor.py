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
    """A code for ``secret`` that no sign-in of this test run has used yet. A fourth sign-in
    of one user within one step waits for the next step (at most 30 seconds)."""
    totp = pyotp.TOTP(secret)
    while True:
        now = dt.datetime.now(dt.UTC)
        left = totp.interval - now.timestamp() % totp.interval
        current = totp.timecode(now)
        step = max(current - 1, _last_step.get(secret, current - 2) + 1)
        # Near the turn of the step, the code for the step before would be out of the window.
        if step <= current + 1 and (step >= current or left >= 2):
            _last_step[secret] = step
            return totp.generate_otp(step)
        time.sleep(left + 0.1)
