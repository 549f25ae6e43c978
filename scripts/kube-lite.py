#!/usr/bin/env python3
"""The few kubectl commands scripts/demo uses, for machines without kubectl.

Talks to the sandbox's Kubernetes API named by $KUBECONFIG over HTTPS, trusting
only the kubeconfig's certificate-authority-data and sending its token, with the
standard library only. Supported (the kubectl spellings):
  [-n NS] scale deployment/NAME --replicas=N
  get events -A [--field-selector SEL] [-o name] [--sort-by=...]
  get pods [-n NS | -A] [-o wide] [--sort-by=.status.podIP]
  get nodes [-L LABEL ...]
"""
import base64
import json
import os
import ssl
import re
import sys
import urllib.parse
import urllib.request


KUBECONFIG_TEXT = None


def kubeconfig_field(name):
    global KUBECONFIG_TEXT
    if KUBECONFIG_TEXT is None:
        KUBECONFIG_TEXT = open(os.environ["KUBECONFIG"]).read()
    m = re.search(name + r":\s*(\S+)", KUBECONFIG_TEXT)
    if not m:
        sys.exit(f"kube-lite: no {name} in $KUBECONFIG")
    return m.group(1).strip("'\"")


def server():
    return kubeconfig_field("server")


def tls_context():
    ca = base64.b64decode(kubeconfig_field("certificate-authority-data")).decode()
    return ssl.create_default_context(cadata=ca)


def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(server() + path, method=method)
    req.add_header("Authorization", "Bearer " + kubeconfig_field("token"))
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, data=data, timeout=30, context=tls_context()) as r:
        return json.load(r)


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def main(argv):
    ns, all_ns, out, labels, selector = "default", False, "", [], None
    args = []
    it = iter(argv)
    for a in it:
        if a == "-n":
            ns = next(it)
        elif a == "-A":
            all_ns = True
        elif a == "-o":
            out = next(it)
        elif a == "-L":
            labels.append(next(it))
        elif a == "--field-selector":
            selector = next(it)
        elif a.startswith("--sort-by") or a.startswith("--replicas"):
            args.append(a)
        else:
            args.append(a)
    if args[:1] == ["scale"]:
        kind, name = args[1].split("/", 1)
        replicas = int([a for a in args if a.startswith("--replicas=")][0].split("=", 1)[1])
        call("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
             {"spec": {"replicas": replicas}}, "application/merge-patch+json")
        print(f"deployment.apps/{name} scaled")
        return
    if args[:2] == ["get", "events"]:
        q = "?" + urllib.parse.urlencode({"fieldSelector": selector}) if selector else ""
        path = "/api/v1/events" if all_ns else f"/api/v1/namespaces/{ns}/events"
        items = call("GET", path + q)["items"]
        items.sort(key=lambda e: e.get("lastTimestamp") or "")
        if out == "name":
            for e in items:
                print("event/" + e["metadata"]["name"])
            return
        rows = [["NAMESPACE", "REASON", "OBJECT", "MESSAGE"]]
        for e in items:
            o = e.get("involvedObject", {})
            rows.append([e["metadata"].get("namespace", ""), e.get("reason", ""),
                         f"{o.get('kind', '').lower()}/{o.get('name', '')}", e.get("message", "")])
        table(rows)
        return
    if args[:2] == ["get", "pods"]:
        path = "/api/v1/pods" if all_ns else f"/api/v1/namespaces/{ns}/pods"
        items = call("GET", path)["items"]
        items.sort(key=lambda p: tuple(int(x) for x in (p.get("status", {}).get("podIP") or "0.0.0.0").split(".")))
        rows = [["NAME", "STATUS", "IP", "NODE"]]
        for p in items:
            st = p.get("status", {})
            rows.append([p["metadata"]["name"], st.get("phase", ""), st.get("podIP", "<none>"),
                         p.get("spec", {}).get("nodeName", "<none>")])
        table(rows)
        return
    if args[:2] == ["get", "nodes"]:
        items = call("GET", "/api/v1/nodes")["items"]
        rows = [["NAME", "READY", "PODS"] + [l.split("/")[-1].upper() for l in labels]]
        for n in items:
            conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
            ls = n["metadata"].get("labels", {})
            rows.append([n["metadata"]["name"], conds.get("Ready", "Unknown"),
                         n.get("status", {}).get("capacity", {}).get("pods", "")]
                        + [ls.get(l, "") for l in labels])
        table(rows)
        return
    sys.exit(f"kube-lite: unsupported: {' '.join(argv)} (install kubectl for more)")


if __name__ == "__main__":
    main(sys.argv[1:])
