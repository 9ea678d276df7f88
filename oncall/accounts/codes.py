"""A doctor's check-in code and duress code.

The duress code looks, to whoever watches the doctor's screen, exactly like the
check-in code: the same answer, the same time taken. So :func:`check_code`
always verifies the given code against both hashes (argon2, the same cost),
whichever matches, and only then says which one did.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from oncall.accounts import ratelimit
from oncall.accounts.models import User
from oncall.accounts.passwords import hash_password, verify_password
from oncall.errors import RateLimited


class CodeMatch(Enum):
    """What a code given with a check-in, a check-out or a cancel turned out to be."""

    NONE_GIVEN = "none_given"
    CHECKIN = "checkin"
    DURESS = "duress"
    WRONG = "wrong"


def hash_code(code: str) -> str:
    """The argon2 hash of a code (the same hasher and cost as passwords)."""
    return hash_password(code)


def check_code(user: User, code: str | None) -> CodeMatch:
    """Which of the user's codes ``code`` is, spending the same work in every case.

    A doctor without codes set who sends a code gets ``WRONG``; without a code,
    ``NONE_GIVEN``. Both verifications run even when the first one matches.
    """
    if code is None:
        return CodeMatch.NONE_GIVEN
    is_checkin = verify_password(user.checkin_code_hash, code)
    is_duress = verify_password(user.duress_code_hash, code)
    if is_duress:
        return CodeMatch.DURESS
    if is_checkin:
        return CodeMatch.CHECKIN
    return CodeMatch.WRONG


#: Wrong codes a doctor may give in one window before codes are refused for a while.
WRONG_CODE_LIMIT = 5
WRONG_CODE_WINDOW_SECONDS = 900


def check_code_guarded(user: User, code: str | None, now: datetime) -> CodeMatch:
    """:func:`check_code`, with guessing stopped.

    Each wrong code counts; after :data:`WRONG_CODE_LIMIT` in a window, codes are
    refused with 429 until the window ends, the right check-in code included, so
    that whoever holds the doctor's phone cannot find the code by trying. The duress
    code is never refused: it is still heard (the caller opens the silent alert and
    answers as usual), which is what a doctor forced to unlock their phone needs.
    """
    match = check_code(user, code)
    if match is CodeMatch.NONE_GIVEN or match is CodeMatch.DURESS:
        return match
    key = f"code:wrong:{user.id}"
    seen = ratelimit.hit(
        key, WRONG_CODE_LIMIT, WRONG_CODE_WINDOW_SECONDS, now,
        amount=1 if match is CodeMatch.WRONG else 0,
    )
    locked = seen.count > WRONG_CODE_LIMIT if match is CodeMatch.WRONG else (
        seen.count >= WRONG_CODE_LIMIT
    )
    if locked:
        raise RateLimited(
            "Too many wrong codes; try again later.",
            headers={"Retry-After": str(seen.retry_after)},
        )
    return match
