"""Anonymization: e-mail and IP addresses and secrets, replaced by sampled placeholders of the same kind.

What is found, by whom:
- secrets with a known shape, by detect-secrets' detectors (their regexes,
  run with `finditer` so the whole value is replaced): AWS access keys and
  secret keys, GitHub, GitLab, Slack, Stripe, SendGrid, Mailchimp, npm, PyPI,
  OpenAI, Discord, Telegram, Square, Twilio and Azure storage tokens, JWTs,
  passwords in URLs (`scheme://user:PASSWORD@host`); and PEM private key
  blocks (`-----BEGIN ... PRIVATE KEY-----`, the marker detect-secrets'
  PrivateKeyDetector looks for), each line of the body a value;
- assignments of literals to secret-sounding names: detect-secrets'
  KeywordDetector (password, passwd, pwd, secret, api_key, private_key, ...)
  and a pattern for the names it lacks (token, access_key, auth, apikey).
  A password-like name takes any value of 4+ characters without spaces that
  is not a placeholder; other names only high-entropy values (12+
  characters, 3.0+ bits of Shannon entropy per character, not a plain
  lower_case word), so `secret_word = "banana"` stays;
- e-mail addresses whose top-level domain is a country code or a common
  generic one (so `x@self.weight`, a matrix product, is not one), except at
  example.com/.org/.net and .test, .invalid, .example;
- IPv4 and IPv6 addresses that parse (`ipaddress`), except loopback,
  unspecified, link-local, multicast, reserved, netmasks, documentation
  ranges and well-known public resolvers (8.8.8.8, 1.1.1.1, ...), which
  identify no one and carry meaning for the code.

Placeholders, sampled from an RNG seeded by (seed, pair_id), so one example
maps a value to one placeholder everywhere and two builds agree:
e-mail -> name42@example.org; public IPv4 -> an address in the documentation
ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24); private IPv4 -> an
address in the same private block; IPv6 -> 2001:db8::/32; every secret ->
random characters of the same classes (upper, lower, digit, hex) and length,
keeping a vendor prefix (AKIA, ghp_, xoxb-, sk_live_, ...) and punctuation.

Values never span lines, so replacing them in the file, in the fixed file and
in the diff's op texts with one mapping keeps the diff applying; `anonymize`
checks that it does and re-renders the diff from the anonymized files when it
does not.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import random
import re
import string
from collections import Counter
from dataclasses import dataclass, field

from detect_secrets.filters.heuristic import (
    is_indirect_reference,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins import (
    aws,
    azure_storage_key,
    basic_auth,
    discord,
    github_token,
    gitlab_token,
    jwt,
    mailchimp,
    npm,
    openai,
    pypi_token,
    sendgrid,
    slack,
    square_oauth,
    stripe,
    telegram_token,
    twilio,
)
from detect_secrets.plugins.keyword import (
    DENYLIST,
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    KeywordDetector,
)

from synth.errors import DiffError
from synth.linediff import LineDiff, LineOp, apply, parse, render

from .example import Example

# kind, detector, which group of each of its patterns holds the secret (default 0), and strings one of
# which a text must hold for the detector to run at all (None: always; "aws" is looked for in lower case)
_DETECTORS = [
    ("aws_access_key", aws.AWSKeyDetector, {0: 0}, ("A3T", "ABIA", "ACCA", "AKIA", "ASIA")),
    ("aws_secret_key", aws.AWSKeyDetector, {1: 1}, ("aws",)),
    ("github_token", github_token.GitHubTokenDetector, {}, ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    ("slack_token", slack.SlackDetector, {}, ("xox", "hooks.slack.com")),
    ("url_password", basic_auth.BasicAuthDetector, {0: 1}, ("://",)),
    ("api_token", gitlab_token.GitLabTokenDetector, {}, ("gl", "GR1348941")),
    ("api_token", stripe.StripeDetector, {}, ("k_live_",)),
    ("api_token", sendgrid.SendGridDetector, {}, ("SG.",)),
    ("api_token", mailchimp.MailchimpDetector, {}, ("-us",)),
    ("api_token", npm.NpmDetector, {0: 1}, ("_authToken",)),
    ("api_token", pypi_token.PypiTokenDetector, {}, ("pypi-",)),
    ("api_token", openai.OpenAIDetector, {}, ("T3BlbkFJ",)),
    ("api_token", discord.DiscordBotTokenDetector, {}, None),
    ("api_token", telegram_token.TelegramBotTokenDetector, {}, None),
    ("api_token", square_oauth.SquareOAuthDetector, {}, ("sq0csp-",)),
    ("api_token", twilio.TwilioKeyDetector, {}, ("AC", "SK")),
    ("api_token", azure_storage_key.AzureStorageKeyDetector, {}, ("AccountKey=",)),
    ("api_token", jwt.JwtTokenDetector, {}, ("eyJ",)),
]
_PATTERNS = [(kind, pattern, groups.get(i, 0), hints)
             for kind, detector, groups, hints in _DETECTORS
             for i, pattern in enumerate(detector.denylist) if not groups or i in groups]
KINDS = ("private_key", "aws_access_key", "aws_secret_key", "github_token", "slack_token", "api_token",
         "url_password", "secret_assignment", "email", "ipv4", "ipv6")

_KEYWORD_LINE = re.compile("|".join(DENYLIST), re.IGNORECASE)
_KEYWORD_HINTS = ("key", "pass", "pwd", "secret", "contrase")  # every DENYLIST entry holds one of these
_PASSWORD_NAME = re.compile(r"pass|pwd|contrase", re.IGNORECASE)
_TOKEN_ASSIGNMENT = re.compile(
    r"""(?i)(?<![\w])['"]?\w*(?:token|access_?key|apikey|auth)\w*['"]?\s*(?::|=|:=)\s*(['"])([^'"\s]{12,})\1""")
_PLACEHOLDER_WORDS = frozenset({"password", "passwd", "changeme", "secret", "example", "none", "null", "test"})
_KEY_BLOCK = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----(.*?)-----END", re.DOTALL)
_KEY_BODY_SPLIT = re.compile(r"\\n|\\r|\r?\n")

_EMAIL = re.compile(r"(?<![\w.%+:/-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,24}(?![\w(\[])")
# a 2-letter country code or a common generic TLD: `x@self.weight` is a matrix product, not an address
_TLDS = frozenset((
    "com", "org", "net", "edu", "gov", "mil", "int", "info", "biz", "io", "dev", "app", "ai", "name", "pro", "tech",
    "xyz", "online", "site", "cloud", "email", "me", "mobi", "aero", "coop", "jobs", "travel", "shop", "store",
    "blog", "design", "live", "news", "team", "company", "systems", "software", "studio", "agency", "digital",
    "network", "solutions", "services", "world"))
_SAFE_DOMAINS = re.compile(r"@(?:[\w.-]+\.)?(?:example\.(?:com|org|net)|[\w-]+\.(?:test|invalid|example))$",
                           re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d")
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:.])")
_KEEP_IPV4 = frozenset({"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "208.67.222.222",
                        "208.67.220.220"})
_DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
_PRIVATE_NETS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]

_VENDOR_PREFIX = re.compile(r"https://hooks\.slack\.com/services/|xox[a-z]-|gh[pousr]_|gl[a-z]+-|GR1348941"
                            r"|AKIA|ASIA|ABIA|ACCA|A3T|[rs]k_live_|sk-|SG\.|pypi-|npm_|eyJ|AccountKey=|sq0csp-")
_NAMES = ("alex", "sam", "kim", "lee", "robin", "jordan", "casey", "drew", "jamie", "morgan", "river", "sky")
_DOMAINS = ("example.com", "example.org", "example.net")
_HEX = frozenset(string.hexdigits)


@dataclass(frozen=True)
class Finding:
    """One value to replace and what kind of value it is."""

    kind: str
    value: str


@dataclass
class Anonymized:
    """The outcome for one example: the example (None when dropped), kinds of values replaced, why dropped."""

    example: Example | None
    kinds: Counter = field(default_factory=Counter)
    rerendered: bool = False
    reason: str | None = None


def find_pii(text: str) -> list[Finding]:
    """Every value to replace in a text, one Finding per distinct value (the most specific kind wins)."""
    found: dict[str, str] = {}

    def add(kind: str, value: str) -> None:
        if value and "\n" not in value and "\r" not in value and len(value) >= 4:
            found.setdefault(value, kind)

    if "PRIVATE KEY" in text:
        for block in _KEY_BLOCK.finditer(text):
            for line in _KEY_BODY_SPLIT.split(block.group(1)):
                line = line.strip().strip("\"'")
                if len(line) >= 16 and ":" not in line:  # body lines, not 'Proc-Type: 4,ENCRYPTED' headers
                    add("private_key", line)
    lower = text.lower()
    for kind, pattern, group, hints in _PATTERNS:
        if hints is None or any(h in text for h in hints) or (hints == ("aws",) and "aws" in lower):
            for match in pattern.finditer(text):
                add(kind, match.group(group))
    for value in _keyword_values(text, lower):
        add("secret_assignment", value)
    if "@" in text:
        for match in _EMAIL.finditer(text):
            if _email_identifies(match.group(0)):
                add("email", match.group(0))
    if _IPV4_HINT.search(text):
        for match in _IPV4.finditer(text):
            if _ipv4_identifies(match.group(0)):
                add("ipv4", match.group(0))
    if "::" in text or _IPV6_HINT.search(text):
        for match in _IPV6.finditer(text):
            if _ipv6_identifies(match.group(0)):
                add("ipv6", match.group(0))
    return [Finding(kind, value) for value, kind in found.items()]


def placeholders(findings: list[Finding], seed: int, key: str) -> dict[str, str]:
    """A placeholder per value, from an RNG seeded by (seed, key): stable across runs, one per value."""
    rng = random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big"))
    out: dict[str, str] = {}
    taken = {f.value for f in findings}
    for f in sorted(findings, key=lambda f: (f.kind, f.value)):
        for _ in range(20):  # a clash with another value or placeholder is astronomically rare
            fake = _SAMPLERS.get(f.kind, _shaped)(f.value, rng)
            if fake not in taken:
                break
        out[f.value] = fake
        taken.add(fake)
    return out


def replacer(mapping: dict[str, str]):
    """A function that replaces every mapped value in a text at once (longest first)."""
    if not mapping:
        return lambda text: text
    parts = []
    for value in sorted(mapping, key=lambda v: (-len(v), v)):
        part = re.escape(value)
        if len(value) < 8:  # a short value only as a whole word: 'abc1' must not change 'abc12'
            part = (r"(?<!\w)" if value[0].isalnum() or value[0] == "_" else "") + part
            part += r"(?!\w)" if value[-1].isalnum() or value[-1] == "_" else ""
        parts.append(part)
    pattern = re.compile("|".join(parts))
    return lambda text: pattern.sub(lambda m: mapping[m.group(0)], text)


def anonymize(ex: Example, seed: int) -> Anonymized:
    """The example with every value found replaced consistently in code, fixed code, diff and message."""
    ops = parse(ex.diff).ops
    added = "\n".join(op.text for op in ops if op.sign == "+")
    findings = find_pii(f"{ex.code}\n{added}\n{ex.message}")
    if not findings:
        return Anonymized(ex)
    mapping = placeholders(findings, seed, ex.pair_id)
    sub = replacer(mapping)
    code, fixed = sub(ex.code), sub(ex.fixed)
    diff = LineDiff(tuple(LineOp(op.sign, op.number, sub(op.text)) for op in ops)).to_text()
    kinds = Counter(f.kind for f in findings)
    rerendered = False
    if not _applies(code, diff, fixed):
        diff, rerendered = render(code, fixed), True
        if not _applies(code, diff, fixed) or not diff:
            return Anonymized(None, kinds, rerendered, "anonymized_diff_does_not_apply")
    out = ex.with_texts(code=code, fixed=fixed, diff=diff, message=sub(ex.message), path=sub(ex.path))
    return Anonymized(out, kinds, rerendered)


def _applies(code: str, diff: str, fixed: str) -> bool:
    try:
        return apply(code, diff) == fixed
    except DiffError:
        return False


def _keyword_values(text: str, lower: str) -> list[str]:
    """Literal values assigned to secret-sounding names, on lines that name one."""
    values = []
    if any(hint in lower for hint in _KEYWORD_HINTS):
        detector = KeywordDetector()
        for line in text.split("\n"):
            low = line.lower()
            if not any(hint in low for hint in _KEYWORD_HINTS) or not _KEYWORD_LINE.search(line) \
                    or is_indirect_reference(line):
                continue
            password = _PASSWORD_NAME.search(line) is not None
            for value in detector.analyze_string(line, QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP):
                if _secret_like(value, password):
                    values.append(value)
    if any(word in lower for word in ("token", "key", "auth")):
        values += [m.group(2) for m in _TOKEN_ASSIGNMENT.finditer(text) if _secret_like(m.group(2), False)]
    return values


def _secret_like(value: str, password: bool) -> bool:
    """A value worth replacing: not a placeholder, template or plain word; high-entropy unless a password."""
    if (len(value) < 4 or any(c.isspace() for c in value) or value.lower() in _PLACEHOLDER_WORDS
            or is_templated_secret(value) or is_sequential_string(value) or set(value) <= set("*xX.-_#")
            or "://" in value or value.startswith(("/", "./", "~"))):  # token_url = "https://...", a path
        return False
    if password:
        return True
    return len(value) >= 12 and _entropy(value) >= 3.0 and not re.fullmatch(r"[a-z_]+", value)


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _email_identifies(text: str) -> bool:
    domain = text.rpartition("@")[2].lower()
    tld = domain.rpartition(".")[2]
    return ((len(tld) == 2 or tld in _TLDS) and not domain.startswith(("self.", "cls."))
            and not _SAFE_DOMAINS.search(text))


def _ipv4_identifies(text: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    if text in _KEEP_IPV4 or text.startswith(("255.", "0.")) or any(ip in net for net in _DOC_NETS):
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast or ip.is_reserved)


def _ipv6_identifies(text: str) -> bool:
    groups = [g for g in text.split(":") if g]
    if len(groups) < 3 and not (groups and len(groups[0]) == 4):  # a[1::2] is a slice, not an address
        return False
    try:
        ip = ipaddress.IPv6Address(text)
    except ValueError:
        return False
    if any(ip in net for net in _DOC_NETS):
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_reserved)


def _email(value: str, rng: random.Random) -> str:
    return f"{rng.choice(_NAMES)}{rng.randrange(10, 100)}@{rng.choice(_DOMAINS)}"


def _ipv4(value: str, rng: random.Random) -> str:
    ip = ipaddress.IPv4Address(value)
    for net in _PRIVATE_NETS:
        if ip in net:  # a private address stays private, in its own block
            return str(net[rng.randrange(1, net.num_addresses - 1)])
    return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"


def _ipv6(value: str, rng: random.Random) -> str:
    groups = ["2001", "db8"] + [f"{rng.randrange(0x10000):x}" for _ in range(6)]
    return str(ipaddress.IPv6Address(":".join(groups)))


def _shaped(value: str, rng: random.Random) -> str:
    """Random characters of the same classes, keeping a vendor prefix and punctuation."""
    prefix = _VENDOR_PREFIX.match(value)
    keep = prefix.end() if prefix else 0
    rest = value[keep:]
    hexish = len(rest) >= 8 and set(rest) <= _HEX
    out = []
    for c in rest:
        if hexish and c.isalpha():
            out.append(rng.choice("abcdef" if c.islower() else "ABCDEF"))
        elif c.isdigit():
            out.append(rng.choice(string.digits))
        elif c.isupper() and c.isascii():
            out.append(rng.choice(string.ascii_uppercase))
        elif c.islower() and c.isascii():
            out.append(rng.choice(string.ascii_lowercase))
        else:
            out.append(c)
    return value[:keep] + "".join(out)


_SAMPLERS = {"email": _email, "ipv4": _ipv4, "ipv6": _ipv6}
