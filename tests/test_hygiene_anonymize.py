"""Anonymization: what is found, what replaces it, and that code, fixed code and diff stay consistent."""

from __future__ import annotations

import ipaddress
import re

import pytest

from synth.hygiene.anonymize import anonymize, find_pii, placeholders
from synth.hygiene.example import Example
from synth.linediff import apply, render

AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
KEY_LINES = ("MIIEpAIBAAKCAQEA1234567890abcdefghijklmnopqrstuvwxyzABCDEFGH",
             "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWX")

SECRETS = f'''import boto3
# maintainer: jane.doe@corp.io
AWS_ACCESS_KEY_ID = "{AWS_ID}"
aws_secret_access_key = "{AWS_SECRET}"
GITHUB = "{GITHUB}"
slack = "{SLACK}"
DB = "postgres://admin:s3cr3tP4ss@db.internal:5432/app"
password = "hunter22"
api_token = "f3a9c2e1b7d84a6f9e0c1b2a3d4e5f60"
host = "10.1.2.3"
public = "54.23.11.7"
v6 = "2600:1f18:abcd::42"
KEY = """-----BEGIN RSA PRIVATE KEY-----
{KEY_LINES[0]}
{KEY_LINES[1]}
-----END RSA PRIVATE KEY-----"""
'''


def test_every_kind_is_found_with_its_whole_value():
    found = {(f.kind, f.value) for f in find_pii(SECRETS)}
    assert found == {
        ("email", "jane.doe@corp.io"), ("aws_access_key", AWS_ID), ("aws_secret_key", AWS_SECRET),
        ("github_token", GITHUB), ("slack_token", SLACK), ("url_password", "s3cr3tP4ss"),
        ("secret_assignment", "hunter22"), ("secret_assignment", "f3a9c2e1b7d84a6f9e0c1b2a3d4e5f60"),
        ("ipv4", "10.1.2.3"), ("ipv4", "54.23.11.7"), ("ipv6", "2600:1f18:abcd::42"),
        ("private_key", KEY_LINES[0]), ("private_key", KEY_LINES[1]),
    }


@pytest.mark.parametrize("text", [
    'HOST = "127.0.0.1"\nANY = "0.0.0.0"\nDNS = "8.8.8.8"\nMASK = "255.255.255.0"\nDOC = "192.0.2.7"\n',
    'version = "1.2.3.4.5"\nv = "v2.0.1"\n',
    "evens = nums[::2]\nodds = nums[1::2]\nlo = '::1'\n",
    'y = x@self.weight\nz = a@b.T\n',
    'MAIL = "noreply@example.com"\nTEST = "bob@site.test"\n',
    'password = input("Password: ")\npwd = os.environ["PWD"]\nsecret_word = "banana"\n',
    'password = ""\npassword = "changeme"\ntoken = "Bearer"\n',
    "@property\ndef name(self):\n    return self._name\n",
])
def test_code_that_identifies_no_one_is_left_alone(text):
    assert find_pii(text) == []


def test_placeholders_are_of_the_same_kind_and_shape():
    fake = placeholders(find_pii(SECRETS), seed=0, key="pair-1")
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", fake[AWS_ID]) and fake[AWS_ID] != AWS_ID
    assert re.fullmatch(r"ghp_[A-Za-z0-9]{36}", fake[GITHUB]) and fake[GITHUB] != GITHUB
    assert re.fullmatch(r"xoxb-\d{12}-\d{13}-[A-Za-z]{24}", fake[SLACK])
    assert len(fake[AWS_SECRET]) == 40 and fake[AWS_SECRET].count("/") == 2
    assert re.fullmatch(r"[a-z]+\d\d@example\.(com|org|net)", fake["jane.doe@corp.io"])
    assert ipaddress.ip_address(fake["10.1.2.3"]) in ipaddress.ip_network("10.0.0.0/8")
    assert any(ipaddress.ip_address(fake["54.23.11.7"]) in ipaddress.ip_network(net)
               for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
    assert ipaddress.ip_address(fake["2600:1f18:abcd::42"]) in ipaddress.ip_network("2001:db8::/32")
    assert [len(fake[line]) for line in KEY_LINES] == [len(line) for line in KEY_LINES]
    assert re.fullmatch(r"[a-f0-9]{32}", fake["f3a9c2e1b7d84a6f9e0c1b2a3d4e5f60"])
    # seeded by (seed, example): the same twice, another seed or example gives others
    assert placeholders(find_pii(SECRETS), seed=0, key="pair-1") == fake
    assert placeholders(find_pii(SECRETS), seed=1, key="pair-1")[AWS_ID] != fake[AWS_ID]
    assert placeholders(find_pii(SECRETS), seed=0, key="pair-2")[AWS_ID] != fake[AWS_ID]


def _example(code: str, fixed: str, message: str = '"prnt" is not defined', line: int = 1) -> Example:
    return Example("pair-1", "user", "user", "r1", 0, "main.py", "pyright[reportUndefinedVariable]", message, line,
                   code, render(code, fixed), fixed)


def test_code_fixed_code_diff_and_message_get_one_mapping_and_the_diff_still_applies():
    code = SECRETS + 'send("jane.doe@corp.io", host)\nprnt(KEY)\n'
    fixed = SECRETS + 'send("jane.doe@corp.io", host)\nprint(KEY)  # ask jane.doe@corp.io\n'
    message = 'Cannot send to "jane.doe@corp.io"'
    result = anonymize(_example(code, fixed, message, code.count("\n")), seed=3)
    ex = result.example
    assert result.reason is None and not result.rerendered
    assert result.kinds == {"email": 1, "aws_access_key": 1, "aws_secret_key": 1, "github_token": 1,
                            "slack_token": 1, "url_password": 1, "secret_assignment": 2, "ipv4": 2, "ipv6": 1,
                            "private_key": 2}
    every = (ex.code, ex.fixed, ex.diff, ex.message)
    for secret in (AWS_ID, AWS_SECRET, GITHUB, SLACK, "jane.doe@corp.io", "s3cr3tP4ss", "hunter22", "10.1.2.3",
                   *KEY_LINES):
        assert not any(secret in text for text in every), secret
    email = re.search(r"\w+@example\.\w+", ex.message).group(0)
    assert ex.code.count(email) == 2 and ex.fixed.count(email) == 3 and email in ex.diff
    assert apply(ex.code, ex.diff) == ex.fixed
    assert ex.diff == render(ex.code, ex.fixed)  # the same ops, only the texts changed
    assert anonymize(_example(code, fixed, message, code.count("\n")), seed=3).example == ex


def test_an_example_without_anything_to_replace_comes_back_as_it_was():
    code, fixed = "x = 1\nprnt(x)\n", "x = 1\nprint(x)\n"
    ex = _example(code, fixed, line=2)
    result = anonymize(ex, seed=0)
    assert result.example is ex and not result.kinds


def test_a_short_password_is_replaced_only_as_a_whole_word():
    code = 'password = "abc1"\nabc12 = 5\nprnt(abc12)\n'
    fixed = code.replace("prnt(", "print(")
    ex = anonymize(_example(code, fixed, line=3), seed=0).example
    assert "abc12 = 5" in ex.code and '"abc1"' not in ex.code
    assert apply(ex.code, ex.diff) == ex.fixed
