"""What an HTTP User-Agent says about the client: a browser (and its operating system), a
scripting client, an attack tool, or an injection payload. Shared by ``suspicious_user_agent``
and ``executable_download``; written as Ibis expressions so every engine classifies alike.

The lists are deliberately short and literal (case-insensitive substrings or RE2 patterns):
each entry names a client that announces itself, never a guess from the string's shape.
"""

from __future__ import annotations

import ibis

#: Exploit strings sent in the User-Agent header itself: Log4Shell lookups, Shellshock function
#: definitions, script and SQL injection, path traversal.
INJECTION = r"(?i)\$\{[a-z:]*(jndi|lower|upper|env|sys|date):|\(\)\s*\{\s*:?\s*;?\s*\}\s*;|<script|union(\s|\+|%20)+select|\.\./\.\./|/etc/passwd"
#: Scanners and attack tools that name themselves.
ATTACK_TOOLS = ("sqlmap", "nikto", "nmap scripting engine", "masscan", "zgrab", "hydra", "wpscan",
                "dirbuster", "gobuster", "feroxbuster", "ffuf", "fuzz faster", "wfuzz", "nuclei", "metasploit",
                "acunetix", "netsparker", "w3af", "openvas", "havij", "commix", "jaeles", "zmeu", "morfeus",
                "fimap", "whatweb", "arachni", "skipfish", "brutus", "medusa", "ncrack", "x-scan", "jorgee")
#: Scripting clients and download tools: normal on servers and build machines, unusual from a
#: person's workstation (certutil's URL agent included: droppers fetch payloads with it; BITS
#: is not listed, Windows Update downloads with it all day).
SCRIPTING = ("curl/", "wget/", "python-requests", "python-urllib", "python/", "aiohttp", "python-httpx",
             "go-http-client", "java/", "okhttp", "libwww-perl", "lwp-", "ruby", "php/", "powershell",
             "certutil", "urlgrabber", "httpie", "node-fetch", "axios/", "pycurl")
#: Browser User-Agents start so; their operating system is told by these markers (first match).
BROWSER_PREFIX = "mozilla/"
OS_MARKERS = (("android", "android"), ("iphone", "ios"), ("ipad", "ios"), ("windows", "windows"),
              ("mac os x", "macos"), ("macintosh", "macos"), ("cros", "chromeos"), ("linux", "linux"),
              ("x11", "linux"))


def _any(ua, needles) -> ibis.Expr:
    return ibis.or_(*[ua.contains(n) for n in needles]) if needles else ibis.literal(False)


def ua_class(ua_col, extra_tools=(), extra_scripting=()):
    """``injection``, ``attack_tool``, ``scripting``, ``empty``, ``browser`` or ``other`` (null: no
    User-Agent header at all)."""
    low = ua_col.lower()
    return ibis.cases(
        (ua_col.isnull(), ibis.null().cast("string")),
        (ua_col.strip() == "", "empty"),
        (ua_col.re_search(INJECTION), "injection"),
        (_any(low, ATTACK_TOOLS + tuple(x.lower() for x in extra_tools)), "attack_tool"),
        (_any(low, SCRIPTING + tuple(x.lower() for x in extra_scripting)), "scripting"),
        (low.startswith(BROWSER_PREFIX), "browser"),
        else_="other",
    )


def ua_os(ua_col):
    """The operating system a browser User-Agent names (null for others)."""
    low = ua_col.lower()
    return ibis.cases(*[(low.contains(m), os) for m, os in OS_MARKERS], else_=ibis.null().cast("string"))
