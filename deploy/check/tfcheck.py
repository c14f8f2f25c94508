#!/usr/bin/env python3
"""Static checks of the vxtap Terraform module, for machines without Terraform or AWS credentials.

    tfcheck.py [--fmt-only] MODULE_DIR

Parses every .tf file under MODULE_DIR (the module and its examples/*) with python-hcl2 and checks:
  * references: every var.X, local.X, data.T.N, T.N and module.M.O names something declared in the
    same directory; every declared variable and local is used;
  * the resource and data-source types are the expected ones;
  * the module's shape: internal network NLB, UDP 4789 listener and target group with an HTTP health
    check on 9445 /-/healthcheck, security-group rules (UDP 4789 from the mirror sources, TCP 9445 from
    the VPC, the optional HTTP mirror port), target-tracking CPU scaling, traffic mirror target/filter/
    rules/sessions with VNI default 1377, the launch template's user data, the required outputs;
  * tags: every resource that takes tags gets the module's local.tags;
  * templatefile() calls: the template exists and the variables it uses are exactly those passed;
  * examples: every required module variable is set, no unknown one, outputs exist in the module;
  * README.md documents every variable and output;
  * layout as `terraform fmt` writes it (.tf and .tftest.hcl): 2-space indents by bracket nesting,
    aligned `=` in runs of single-line attributes, no tabs or trailing spaces, one final newline.
Exits 1 with one line per problem, 0 when all is well.
"""

import glob
import os
import re
import sys

try:
    import hcl2
except ImportError:  # pragma: no cover
    sys.exit("tfcheck: python-hcl2 is missing (pip install python-hcl2)")

PROBLEMS = []
PARSE_FAILED = []


def problem(where, msg):
    line = f"{where}: {msg}"
    if line not in PROBLEMS:
        PROBLEMS.append(line)


# --------------------------------------------------------------------------------------------------
# python-hcl2 (v7/v8) keeps quotes on labels and string values and wraps expressions in ${...}.
# --------------------------------------------------------------------------------------------------

def unquote(s):
    if isinstance(s, str) and len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1]
    return s


def literal(v):
    """The value of a literal attribute ('"UDP"' -> 'UDP', 3 -> 3), or None for an expression."""
    if isinstance(v, str):
        if v.startswith('"') and v.endswith('"') and "${" not in v:
            return v[1:-1]
        return None
    return v


def clean(node):
    """Drops python-hcl2's bookkeeping keys (__is_block__, __comments__...)."""
    if isinstance(node, dict):
        return {unquote(k): clean(v) for k, v in node.items() if not (k.startswith("__") and k.endswith("__"))}
    if isinstance(node, list):
        return [clean(v) for v in node]
    return node


def texts(node):
    """Every string in a parsed tree (expressions and literals), for reference scanning."""
    if isinstance(node, dict):
        for v in node.values():
            yield from texts(v)
    elif isinstance(node, list):
        for v in node:
            yield from texts(v)
    elif isinstance(node, str):
        yield node


def blocks(doc, kind):
    """[(labels..., body)] of every block of a kind: resource -> (type, name, body)."""
    out = []
    for entry in doc.get(kind, []):
        if kind in ("resource", "data"):
            for rtype, named in entry.items():
                for name, body in named.items():
                    out.append((rtype, name, body))
        elif kind in ("variable", "output", "module", "provider"):
            for name, body in entry.items():
                out.append((name, body))
        else:
            out.append((entry,))
    return out


def one(body, key):
    """A nested block that appears once, as a dict (python-hcl2 gives a list of blocks)."""
    v = body.get(key)
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return v[0]
    return v if isinstance(v, dict) else None


# --------------------------------------------------------------------------------------------------
# Loading a directory
# --------------------------------------------------------------------------------------------------

class Dir:
    def __init__(self, path):
        self.path = path
        self.files = sorted(glob.glob(os.path.join(path, "*.tf")))
        self.docs = {}
        for f in self.files:
            try:
                with open(f, encoding="utf-8") as fh:
                    self.docs[f] = clean(hcl2.load(fh))
            except Exception as e:  # noqa: BLE001 - any parse error is a finding
                PARSE_FAILED.append(f)
                problem(f, f"does not parse: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        self.variables, self.outputs, self.locals, self.modules = {}, {}, {}, {}
        self.resources, self.data = {}, {}
        self.providers_required = {}
        for f, doc in self.docs.items():
            for name, body in blocks(doc, "variable"):
                self._declare(self.variables, name, body, f, "variable")
            for name, body in blocks(doc, "output"):
                self._declare(self.outputs, name, body, f, "output")
            for name, body in blocks(doc, "module"):
                self._declare(self.modules, name, body, f, "module")
            for (body,) in blocks(doc, "locals"):
                for k, v in body.items():
                    self._declare(self.locals, k, v, f, "local")
            for rtype, name, body in blocks(doc, "resource"):
                self._declare(self.resources, f"{rtype}.{name}", body, f, "resource")
            for rtype, name, body in blocks(doc, "data"):
                self._declare(self.data, f"{rtype}.{name}", body, f, "data source")
            for (tf,) in blocks(doc, "terraform"):
                for rp in tf.get("required_providers", []) or []:
                    self.providers_required.update(rp)

    @staticmethod
    def _declare(table, name, body, f, what):
        if name in table:
            problem(f, f"{what} {name} declared twice")
        table[name] = body

    def all_texts(self):
        for doc in self.docs.values():
            yield from texts(doc)


REF_VAR = re.compile(r"(?<![\w.\-/])var\.([A-Za-z_][\w-]*)")
REF_LOCAL = re.compile(r"(?<![\w.\-/])local\.([A-Za-z_][\w-]*)")
REF_DATA = re.compile(r"(?<![\w.\-/])data\.([a-z][a-z0-9_]*)\.([A-Za-z_][\w-]*)")
REF_RESOURCE = re.compile(r"(?<![\w.\-/])(aws_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")
REF_MODULE = re.compile(r"(?<![\w.\-/])module\.([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)")


def check_references(d):
    used_vars, used_locals = set(), set()
    for t in d.all_texts():
        for m in REF_VAR.finditer(t):
            used_vars.add(m.group(1))
            if m.group(1) not in d.variables:
                problem(d.path, f"var.{m.group(1)} is used but not declared")
        for m in REF_LOCAL.finditer(t):
            used_locals.add(m.group(1))
            if m.group(1) not in d.locals:
                problem(d.path, f"local.{m.group(1)} is used but not declared")
        for m in REF_DATA.finditer(t):
            if f"{m.group(1)}.{m.group(2)}" not in d.data:
                problem(d.path, f"data.{m.group(1)}.{m.group(2)} is used but not declared")
        for m in REF_RESOURCE.finditer(t):
            start = m.start()
            if t[max(0, start - 5):start] == "data.":
                continue
            if f"{m.group(1)}.{m.group(2)}" not in d.resources:
                problem(d.path, f"{m.group(1)}.{m.group(2)} is used but not declared")
        for m in REF_MODULE.finditer(t):
            if m.group(1) not in d.modules:
                problem(d.path, f"module.{m.group(1)} is used but not declared")
    for v in d.variables:
        if v not in used_vars:
            problem(d.path, f"variable {v} is declared but never used")
    for l in d.locals:
        if l not in used_locals:
            problem(d.path, f"local {l} is declared but never used")
    for name, body in d.outputs.items():
        value = body.get("value")
        refs = [m for t in texts(value) for r in (REF_RESOURCE, REF_DATA, REF_LOCAL, REF_MODULE, REF_VAR)
                for m in r.finditer(t)]
        if not refs:
            problem(d.path, f"output {name} references nothing the configuration declares")


# --------------------------------------------------------------------------------------------------
# The module's expected shape
# --------------------------------------------------------------------------------------------------

EXPECTED_RESOURCE_TYPES = {
    "aws_lb", "aws_lb_target_group", "aws_lb_listener",
    "aws_security_group", "aws_vpc_security_group_ingress_rule", "aws_vpc_security_group_egress_rule",
    "aws_iam_role", "aws_iam_instance_profile", "aws_iam_role_policy", "aws_iam_role_policy_attachment",
    "aws_launch_template", "aws_autoscaling_group", "aws_autoscaling_policy",
    "aws_ec2_traffic_mirror_target", "aws_ec2_traffic_mirror_filter", "aws_ec2_traffic_mirror_filter_rule",
    "aws_ec2_traffic_mirror_session",
}
EXPECTED_DATA_TYPES = {"aws_vpc", "aws_partition"}
REQUIRED_RESOURCE_TYPES = EXPECTED_RESOURCE_TYPES - {
    "aws_iam_role", "aws_iam_instance_profile", "aws_iam_role_policy", "aws_iam_role_policy_attachment",
    "aws_vpc_security_group_egress_rule",
}
# Resource types whose AWS objects take tags (aws_autoscaling_group: `tag` blocks; rules and policies:
# no tags).
TAGGABLE = {
    "aws_lb", "aws_lb_target_group", "aws_lb_listener", "aws_security_group",
    "aws_vpc_security_group_ingress_rule", "aws_vpc_security_group_egress_rule", "aws_iam_role",
    "aws_iam_instance_profile", "aws_launch_template", "aws_ec2_traffic_mirror_target",
    "aws_ec2_traffic_mirror_filter", "aws_ec2_traffic_mirror_session",
}
REQUIRED_OUTPUTS = {
    "nlb_dns_name", "nlb_arn", "target_group_arn", "traffic_mirror_target_id", "traffic_mirror_filter_id",
    "traffic_mirror_session_ids", "autoscaling_group_name",
}


class Resolver:
    """Resolves simple expressions to literals: "${var.x}", "${local.x}", "${tostring(var.x)}"."""

    def __init__(self, d):
        self.d = d

    def __call__(self, v, depth=0):
        lit = literal(v)
        if lit is not None or not isinstance(v, str) or depth > 5:
            return lit
        m = re.fullmatch(r"\$\{(tostring\()?(var|local)\.([\w-]+)\)?\}", v)
        if not m:
            return None
        kind, name = m.group(2), m.group(3)
        if kind == "var":
            val = self(self.d.variables.get(name, {}).get("default"), depth + 1)
        else:
            val = self(self.d.locals.get(name), depth + 1)
        if m.group(1) and val is not None:
            val = str(val)
        return val


def of_type(d, rtype):
    return [(k.split(".", 1)[1], b) for k, b in d.resources.items() if k.split(".", 1)[0] == rtype]


def check_module_shape(d):
    where = d.path
    res = Resolver(d)
    types = {k.split(".", 1)[0] for k in d.resources}
    for t in sorted(types - EXPECTED_RESOURCE_TYPES):
        problem(where, f"unexpected resource type {t}")
    for t in sorted(REQUIRED_RESOURCE_TYPES - types):
        problem(where, f"missing resource type {t}")
    for t in sorted({k.split(".", 1)[0] for k in d.data} - EXPECTED_DATA_TYPES):
        problem(where, f"unexpected data source type {t}")
    aws = d.providers_required.get("aws")
    if not isinstance(aws, dict) or unquote(aws.get("source")) != "hashicorp/aws":
        problem(where, "terraform.required_providers.aws must have source = \"hashicorp/aws\"")

    # Variables: description and type on each; the defaults the deployment relies on.
    for name, body in d.variables.items():
        for attr in ("description", "type"):
            if attr not in body:
                problem(where, f"variable {name} has no {attr}")
    for name, want in (("vni", 1377), ("health_port", 9445), ("http_mirror_port", 8445)):
        got = res(d.variables.get(name, {}).get("default"))
        if got != want:
            problem(where, f"variable {name} must default to {want}, not {got!r}")
    if "packet_length" in d.variables and d.variables["packet_length"].get("default", "x") is not None:
        problem(where, "variable packet_length must default to null (whole packets)")
    for name in ("package_url", "package_s3_uri", "replay_url"):
        if name not in d.variables:
            problem(where, f"variable {name} is missing")

    # Network Load Balancer: internal, network, a UDP 4789 listener to a UDP 4789 target group whose
    # health check is HTTP on 9445 /-/healthcheck.
    lbs = of_type(d, "aws_lb")
    if not any(literal(b.get("load_balancer_type")) == "network" and b.get("internal") is True for _, b in lbs):
        problem(where, "no internal network load balancer (aws_lb internal = true, load_balancer_type = \"network\")")
    udp_listeners = [b for _, b in of_type(d, "aws_lb_listener")
                     if literal(b.get("protocol")) == "UDP" and res(b.get("port")) == 4789]
    if not udp_listeners:
        problem(where, "no aws_lb_listener with protocol UDP on port 4789")
    udp_tgs = [(n, b) for n, b in of_type(d, "aws_lb_target_group")
               if literal(b.get("protocol")) == "UDP" and res(b.get("port")) == 4789]
    if not udp_tgs:
        problem(where, "no aws_lb_target_group with protocol UDP on port 4789")
    for n, b in udp_tgs:
        hc = one(b, "health_check") or {}
        got = (literal(hc.get("protocol")), res(hc.get("port")), literal(hc.get("path")))
        if got != ("HTTP", "9445", "/-/healthcheck"):
            problem(where, f"aws_lb_target_group.{n} health check is {got}, want ('HTTP', '9445', '/-/healthcheck')")
    for b in udp_listeners:
        action = one(b, "default_action") or {}
        if not any(f"aws_lb_target_group.{n}." in (action.get("target_group_arn") or "") for n, _ in udp_tgs):
            problem(where, "the UDP 4789 listener does not forward to the UDP 4789 target group")

    # Security group rules.
    rules = of_type(d, "aws_vpc_security_group_ingress_rule")

    def rule(proto, port, source_ref):
        return [n for n, b in rules if literal(b.get("ip_protocol")) == proto
                and res(b.get("from_port")) == port and res(b.get("to_port")) == port
                and source_ref in str(b.get("for_each", "")) + str(b.get("cidr_ipv4", ""))]
    if not rule("udp", 4789, "mirror_source_cidrs"):
        problem(where, "no ingress rule for UDP 4789 from the mirror-source CIDRs")
    if not rule("tcp", 9445, "vpc_cidrs"):
        problem(where, "no ingress rule for TCP 9445 from the VPC CIDRs")
    if not rule("tcp", 8445, "var.http_mirror_cidrs"):
        problem(where, "no ingress rule for the HTTP mirror port (8445) from var.http_mirror_cidrs")
    for n, b in rules:
        if any(c in str(b) for c in ("0.0.0.0/0", "::/0")):
            problem(where, f"ingress rule {n} is open to the whole internet")

    # Launch template: user data from the template, IMDSv2; the ASG uses it, the target groups and
    # ELB health checks.
    lts = of_type(d, "aws_launch_template")
    for n, b in lts:
        if "local.user_data" not in str(b.get("user_data")):
            problem(where, f"aws_launch_template.{n} does not use local.user_data")
        if literal((one(b, "metadata_options") or {}).get("http_tokens")) != "required":
            problem(where, f"aws_launch_template.{n} must require IMDSv2 (http_tokens = \"required\")")
    if "user-data.sh.tftpl" not in str(d.locals.get("user_data")):
        problem(where, "local.user_data is not rendered from templates/user-data.sh.tftpl")
    for n, b in of_type(d, "aws_autoscaling_group"):
        lt = one(b, "launch_template") or {}
        if "aws_launch_template." not in str(lt.get("id")):
            problem(where, f"aws_autoscaling_group.{n} does not use the launch template")
        if "aws_lb_target_group.vxlan" not in str(b.get("target_group_arns")):
            problem(where, f"aws_autoscaling_group.{n} is not attached to the UDP target group")
        if literal(b.get("health_check_type")) != "ELB":
            problem(where, f"aws_autoscaling_group.{n} must use ELB health checks")
    cpu = [b for _, b in of_type(d, "aws_autoscaling_policy") if literal(b.get("policy_type")) == "TargetTrackingScaling"
           and literal((one(one(b, "target_tracking_configuration") or {}, "predefined_metric_specification") or {})
                       .get("predefined_metric_type")) == "ASGAverageCPUUtilization"]
    if not cpu:
        problem(where, "no target-tracking scaling policy on ASGAverageCPUUtilization")

    # Traffic mirroring.
    for n, b in of_type(d, "aws_ec2_traffic_mirror_target"):
        if "aws_lb." not in str(b.get("network_load_balancer_arn")):
            problem(where, f"aws_ec2_traffic_mirror_target.{n} does not point at the NLB")
    for n, b in of_type(d, "aws_ec2_traffic_mirror_filter_rule"):
        if b.get("protocol") != 6 or literal(b.get("rule_action")) != "accept":
            problem(where, f"aws_ec2_traffic_mirror_filter_rule.{n} must accept protocol 6 (TCP)")
    directions = " ".join(str(v) for v in d.locals.values())
    if not ('"ingress"' in directions and '"egress"' in directions):
        problem(where, "the mirror filter rules do not cover both directions (ingress and egress)")
    for n, b in of_type(d, "aws_ec2_traffic_mirror_session"):
        if b.get("virtual_network_id") != "${var.vni}":
            problem(where, f"aws_ec2_traffic_mirror_session.{n} must take virtual_network_id from var.vni")
        if b.get("packet_length") != "${var.packet_length}":
            problem(where, f"aws_ec2_traffic_mirror_session.{n} must take packet_length from var.packet_length")
        for ref in ("aws_ec2_traffic_mirror_target.", "aws_ec2_traffic_mirror_filter."):
            if ref not in str(b):
                problem(where, f"aws_ec2_traffic_mirror_session.{n} does not use {ref[:-1]}")
        if "var.source_network_interface_ids" not in str(b.get("for_each", "")):
            problem(where, f"aws_ec2_traffic_mirror_session.{n} is not one per var.source_network_interface_ids")

    # Tags.
    for key, b in d.resources.items():
        rtype = key.split(".", 1)[0]
        if rtype in TAGGABLE and "local.tags" not in str(b.get("tags", "")):
            problem(where, f"{key} has no tags = local.tags (or a merge of it)")
        if rtype == "aws_launch_template":
            specs = b.get("tag_specifications") or []
            kinds = {literal(s.get("resource_type")) for s in specs}
            if not {"instance", "volume"} <= kinds or not all("local.tags" in str(s.get("tags")) for s in specs):
                problem(where, f"{key} must tag the instances and volumes it launches with local.tags")
        if rtype == "aws_autoscaling_group" and "local.tags" not in str(b.get("dynamic", "")):
            problem(where, f"{key} has no dynamic \"tag\" block over local.tags")

    # Outputs.
    for name in sorted(REQUIRED_OUTPUTS - set(d.outputs)):
        problem(where, f"missing output {name}")
    for name, body in d.outputs.items():
        if "description" not in body:
            problem(where, f"output {name} has no description")


# --------------------------------------------------------------------------------------------------
# templatefile() calls
# --------------------------------------------------------------------------------------------------

TEMPLATE_CALL = re.compile(r'templatefile\(\\?"\$\{path\.module\}/([^"\\]+)\\?",\s*\{')
TEMPLATE_KEYWORDS = {"if", "else", "endif", "for", "endfor", "in", "true", "false", "null"}


def template_variables(text):
    """Names a Terraform template reads: identifiers in ${...} and %{...}, minus functions, loop
    variables, attribute names and keywords."""
    names, loop_vars = set(), set()
    for m in re.finditer(r"(?<![$%])[$%]\{~?(.*?)~?\}", text, re.S):
        expr = re.sub(r'"(\\.|[^"\\])*"', '""', m.group(1))
        fm = re.match(r"\s*for\s+([\w\s,]+?)\s+in\s", expr)
        if fm:
            loop_vars.update(v.strip() for v in fm.group(1).split(","))
        for im in re.finditer(r"(?<![\w.])([A-Za-z_]\w*)(\s*\()?", expr):
            if im.group(2) is None and im.group(1) not in TEMPLATE_KEYWORDS:
                names.add(im.group(1))
    return names - loop_vars


def split_top_level(s):
    """Top-level `key = value` keys of an HCL object body given as text."""
    keys, depth, i, quote = [], 0, 0, False
    start = 0
    parts = []
    while i < len(s):
        c = s[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
        i += 1
    parts.append(s[start:])
    for p in parts:
        m = re.match(r"\s*([A-Za-z_][\w-]*)\s*=", p)
        if m:
            keys.append(m.group(1))
    return keys


def object_after(text, pos):
    """The text of the {...} object that starts at text[pos] == '{'."""
    depth, i, quote = 0, pos, False
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1:i]
        i += 1
    return ""


def check_templates(d):
    for t in d.all_texts():
        for m in TEMPLATE_CALL.finditer(t):
            rel = m.group(1)
            path = os.path.join(d.path, rel)
            if not os.path.isfile(path):
                problem(d.path, f"templatefile() names {rel}, which does not exist")
                continue
            passed = set(split_top_level(object_after(t, m.end() - 1)))
            with open(path, encoding="utf-8") as fh:
                used = template_variables(fh.read())
            for name in sorted(used - passed):
                problem(path, f"uses {name}, which the templatefile() call does not pass")
            for name in sorted(passed - used):
                problem(path, f"is passed {name} but never uses it")


def check_readme(d):
    """The module's README documents every input and output (as `name`)."""
    path = os.path.join(d.path, "README.md")
    if not os.path.isfile(path):
        problem(d.path, "no README.md")
        return
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    for kind, names in (("variable", d.variables), ("output", d.outputs)):
        for name in names:
            if f"`{name}`" not in text:
                problem(path, f"does not document the {kind} `{name}`")


# --------------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------------

def check_example(ex, module):
    for name, body in ex.modules.items():
        source = unquote(body.get("source"))
        if os.path.normpath(os.path.join(ex.path, source)) != os.path.normpath(module.path):
            continue
        given = {k for k in body if k not in ("source", "version", "providers", "depends_on", "count", "for_each")}
        for k in sorted(given - set(module.variables)):
            problem(ex.path, f"module {name} sets {k}, which the module does not declare")
        required = {k for k, v in module.variables.items() if "default" not in v}
        for k in sorted(required - given):
            problem(ex.path, f"module {name} does not set the required variable {k}")
        for t in ex.all_texts():
            for m in REF_MODULE.finditer(t):
                if m.group(1) == name and m.group(2) not in module.outputs:
                    problem(ex.path, f"module.{name}.{m.group(2)} is not an output of the module")
    if not any(os.path.normpath(os.path.join(ex.path, unquote(b.get("source")))) == os.path.normpath(module.path)
               for b in ex.modules.values()):
        problem(ex.path, "the example does not use the module")
    for tfvars in glob.glob(os.path.join(ex.path, "*.tfvars*")):
        try:
            with open(tfvars, encoding="utf-8") as fh:
                values = clean(hcl2.load(fh))
        except Exception as e:  # noqa: BLE001
            problem(tfvars, f"does not parse: {e}")
            continue
        for k in values:
            if k not in ex.variables:
                problem(tfvars, f"sets {k}, which the example does not declare")


# --------------------------------------------------------------------------------------------------
# terraform fmt layout (the rules of hclwrite's formatIndent and formatCells)
# --------------------------------------------------------------------------------------------------

def scan_line(line, state):
    """Tokens of one line that matter for layout: bracket changes, the position of the first
    top-level `=` (with the bracket change after it), and where a trailing comment starts.
    `state` carries open strings/interpolations across lines (heredocs are not used here)."""
    net, eq, eq_net_after, comment = 0, None, 0, None
    stack = state  # entries: 'str' (inside "..."), 'interp' (inside ${...}, counts its own braces)
    i = 0
    while i < len(line):
        c = line[i]
        top = stack[-1] if stack else None
        if top == "str":
            if c == "\\":
                i += 2
                continue
            if c == '"':
                stack.pop()
            elif line.startswith("${", i) or line.startswith("%{", i):
                stack.append(0)
                net += 1
                if eq is not None:
                    eq_net_after += 1
                i += 2
                continue
            i += 1
            continue
        # code (top level or inside an interpolation, whose depth is an int on the stack)
        if c == '"':
            stack.append("str")
        elif c == "#" or line.startswith("//", i):
            comment = i
            break
        elif c in "([{":
            if isinstance(top, int):
                stack[-1] += 1
            net += 1
            if eq is not None:
                eq_net_after += 1
        elif c in ")]}":
            if isinstance(top, int):
                if top == 0:
                    stack.pop()
                else:
                    stack[-1] -= 1
            net -= 1
            if eq is not None:
                eq_net_after -= 1
        elif c == "=" and eq is None and not stack:
            prev = line[i - 1] if i else ""
            nxt = line[i + 1] if i + 1 < len(line) else ""
            if prev not in "=!<>" and nxt not in "=>" and line[:i].strip():
                eq = i
        i += 1
    return net, eq, eq_net_after, comment


def check_fmt(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    if b"\r" in raw:
        problem(path, "has CR line endings")
    text = raw.decode("utf-8")
    if text and not text.endswith("\n"):
        problem(path, "does not end with a newline")
    if text.endswith("\n\n"):
        problem(path, "ends with blank lines")
    lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    found = []
    check_fmt_lines(path, lines, found)
    for msg in found[:10]:
        problem(path, msg)
    if len(found) > 10:
        problem(path, f"... and {len(found) - 10} more layout problems (run `terraform fmt`)")


def check_fmt_lines(path, lines, found):
    def problem(_path, msg):
        found.append(msg)

    indents = []
    state = []
    chain = []  # (lineno, lead_width, eq_col) of consecutive single-line attributes

    def close_chain():
        if chain:
            want = max(w for _, w, _ in chain) + 1
            for n, _, col in chain:
                if col != want:
                    problem(path, f"line {n}: `=` at column {col + 1}, terraform fmt aligns it at {want + 1}")
        chain.clear()

    for n, line in enumerate(lines, 1):
        if "\t" in line:
            problem(path, f"line {n}: tab")
        if line != line.rstrip():
            problem(path, f"line {n}: trailing whitespace")
        if not line.strip():
            close_chain()
            continue
        in_string = bool(state)
        net, eq, eq_net_after, comment = scan_line(line, state)
        code_start = len(line) - len(line.lstrip(" "))
        if not in_string:
            if net > 0:
                want = 2 * len(indents)
                indents.append(net)
            elif net < 0:
                closed = -net
                while closed > 0 and indents:
                    if closed > indents[-1]:
                        closed -= indents.pop()
                    elif closed < indents[-1]:
                        indents[-1] -= closed
                        closed = 0
                    else:
                        indents.pop()
                        closed = 0
                want = 2 * len(indents)
            else:
                want = 2 * len(indents)
            if code_start != want:
                problem(path, f"line {n}: indented {code_start} spaces, terraform fmt indents it {want}")
        if eq is not None and eq_net_after == 0 and (comment is None or eq < comment):
            lead = line[:eq].rstrip()
            if line[eq + 1:eq + 2] != " " or line[eq + 2:eq + 3] == " ":
                problem(path, f"line {n}: want exactly one space after `=`")
            chain.append((n, len(lead), eq))
        else:
            close_chain()
    close_chain()


# --------------------------------------------------------------------------------------------------

def main(argv):
    fmt_only = "--fmt-only" in argv
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1:
        sys.exit(__doc__)
    root = os.path.normpath(args[0])
    tf_files = sorted(glob.glob(os.path.join(root, "**", "*.tf"), recursive=True))
    if not tf_files:
        sys.exit(f"tfcheck: no .tf files under {root}")
    for f in tf_files + sorted(glob.glob(os.path.join(root, "**", "*.tftest.hcl"), recursive=True)):
        check_fmt(f)
    if not fmt_only:
        module = Dir(root)
        examples = sorted(p for p in glob.glob(os.path.join(root, "examples", "*")) if os.path.isdir(p))
        example_dirs = [Dir(p) for p in examples]
        if PARSE_FAILED:
            for p in PROBLEMS:
                print(p)
            print(f"tfcheck: {len(PARSE_FAILED)} file(s) do not parse; other checks skipped")
            return 1
        check_references(module)
        check_module_shape(module)
        check_templates(module)
        check_readme(module)
        if not examples:
            problem(root, "no example under examples/")
        for ex in example_dirs:
            check_references(ex)
            check_templates(ex)
            check_example(ex, module)
        other = sorted({os.path.dirname(f) for f in tf_files} - {root, *examples})
        for p in other:
            problem(p, "holds .tf files but is neither the module nor an example")
        summary = (f"{len(tf_files)} files, {len(module.resources)} resources "
                   f"({len({k.split('.')[0] for k in module.resources})} types), {len(module.data)} data sources, "
                   f"{len(module.variables)} variables, {len(module.outputs)} outputs, {len(examples)} example(s)")
    else:
        summary = f"{len(tf_files)} files"
    if PROBLEMS:
        for p in PROBLEMS:
            print(p)
        print(f"tfcheck: {len(PROBLEMS)} problem(s)")
        return 1
    print(f"tfcheck: ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
