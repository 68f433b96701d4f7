"""Reply texts that reach Postfix (protocol.md §4), exactly as iRedAPD sends them."""

DUNNO = "DUNNO"
OK = "OK"
DISCARD = "DISCARD Policy discard"
REJECT = "REJECT Policy rejection"
REJECT_NULL_SENDER = "REJECT Policy rejection due to null sender"
REJECT_FORGED_SENDER = "REJECT SMTP AUTH is required for users under this sender domain"
REJECT_SENDER_LOGIN_MISMATCH = "REJECT Sender is not same as SMTP authenticate username"
REJECT_BLACKLISTED = "REJECT Blacklisted"
REJECT_NOT_AUTHORIZED = "REJECT Not authorized"
REJECT_QUOTA_EXCEEDED = "REJECT Throttling quota exceeded"
REJECT_MSG_SIZE_EXCEEDED = "REJECT Message size is too large"
REJECT_MAX_RCPTS_EXCEEDED = "REJECT Too many recipients in single message"
REJECT_LOW_SENDER_SCORE = (
    "REJECT Server IP address has bad reputation. FYI: https://www.senderscore.org/lookup.php?lookup="
)
NO_ENABLED_PLUGINS = "DUNNO No enabled plugins"
GREYLISTING_PREFIX = "451 4.7.1"


def greylisting(message: str) -> str:
    return f"{GREYLISTING_PREFIX} {message}"


def blacklisted(discard_instead: bool) -> str:
    return DISCARD if discard_instead else REJECT_BLACKLISTED
