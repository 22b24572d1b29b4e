"""How many examples a fuzz test draws: all of them in the whole suite (`./scripts/test.sh --slow`, what
CI runs), a quarter in the fast suite, which should stay within a few minutes."""

import os

WHOLE_SUITE = os.environ.get("NEWS_AI_WHOLE_SUITE") == "1"


def examples(whole: int) -> int:
    return whole if WHOLE_SUITE else max(10, whole // 4)
