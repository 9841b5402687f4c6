#!/usr/bin/env python3
"""A small OPC UA server (Python asyncua) for the OPC UA ingest's tests, demo and benchmark.

It exposes one machine, the way an S7-1500 data block might, under the namespace
`urn:shopfloor:sim` (index 2), with string node ids:

    ns=2;s=Press.State   UInt16   0 = idle, 1 = running, 2 = fault
    ns=2;s=Press.Reason  String   the fault text
    ns=2;s=Press.Good    UInt16   running total of good parts (rolls over at 65535)
    ns=2;s=Press.Scrap   UInt32   running total of scrap parts
    ns=2;s=Press.Temp    Double   oil temperature, degrees C
    ns=2;s=Press.Mode    String   the operating mode (AUTO, MANUAL)
    ns=2;s=Bench.{i}     Double   --bench N extra nodes, all changed every 100 ms

It is driven line by line on stdin, and answers each line on stdout:

    set NAME TYPE VALUE [SOURCE_MS]   write a value (with its source timestamp, ms since epoch)
    quit

and prints `ready` once it listens. Options: --port, --secure (Basic256Sha256 Sign &
Encrypt only, a self-signed certificate in --pki), --user NAME:PASSWORD (the only
user accepted), --good N / --scrap N (initial totals, to restart "the same PLC").
"""

import argparse
import asyncio
import datetime
import sys
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

TYPES = {
    "UInt16": ua.VariantType.UInt16,
    "UInt32": ua.VariantType.UInt32,
    "Int32": ua.VariantType.Int32,
    "Double": ua.VariantType.Double,
    "String": ua.VariantType.String,
    "Boolean": ua.VariantType.Boolean,
}


class OneUser:
    def __init__(self, name, password):
        self.name, self.password = name, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.name and password == self.password:
            return User(role=UserRole.User)
        return None


def convert(kind, text):
    if kind == "String":
        return text
    if kind == "Double":
        return float(text)
    if kind == "Boolean":
        return text.lower() == "true"
    return int(text)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secure", action="store_true")
    p.add_argument("--user")
    p.add_argument("--pki", default="pki-opcua-sim")
    p.add_argument("--good", type=int, default=0)
    p.add_argument("--scrap", type=int, default=0)
    p.add_argument("--bench", type=int, default=0)
    args = p.parse_args()

    server = Server(user_manager=OneUser(*args.user.split(":", 1)) if args.user else None)
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{args.port}/"
    server.set_endpoint(endpoint)
    server.set_server_name("Shopfloor OPC UA simulator")
    if args.secure:
        pki = Path(args.pki)
        pki.mkdir(parents=True, exist_ok=True)
        uri = "urn:shopfloor:sim:server"
        await server.set_application_uri(uri)
        await setup_self_signed_certificate(
            pki / "server-key.pem", pki / "server-cert.der", uri, "127.0.0.1",
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "shopfloor-sim"},
        )
        await server.load_certificate(str(pki / "server-cert.der"))
        await server.load_private_key(str(pki / "server-key.pem"))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if args.user:
        server.set_identity_tokens([ua.UserNameIdentityToken])

    ns = await server.register_namespace("urn:shopfloor:sim")
    press = await server.nodes.objects.add_object(ua.NodeId("Press", ns), "Press")
    initial = {
        "Press.State": ("UInt16", 0),
        "Press.Reason": ("String", ""),
        "Press.Good": ("UInt16", args.good),
        "Press.Scrap": ("UInt32", args.scrap),
        "Press.Temp": ("Double", 20.0),
        "Press.Mode": ("String", "AUTO"),
    }
    nodes = {}
    for name, (kind, value) in initial.items():
        nodes[name] = await press.add_variable(ua.NodeId(name, ns), name, ua.Variant(value, TYPES[kind]))
    bench = []
    for i in range(args.bench):
        bench.append(await press.add_variable(ua.NodeId(f"Bench.{i}", ns), f"Bench.{i}", 0.0))

    async with server:
        print("ready", flush=True)
        if bench:
            asyncio.ensure_future(churn(server, bench))
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = (await reader.readline()).decode().strip()
            if not line or line == "quit":
                break
            parts = line.split(" ")
            try:
                if parts[0] == "set":
                    _, name, kind, value, *rest = parts
                    src = (
                        datetime.datetime.fromtimestamp(int(rest[0]) / 1000, datetime.timezone.utc)
                        if rest else datetime.datetime.now(datetime.timezone.utc)
                    )
                    dv = ua.DataValue(ua.Variant(convert(kind, value), TYPES[kind]), SourceTimestamp=src,
                                      ServerTimestamp=datetime.datetime.now(datetime.timezone.utc))
                    await server.write_attribute_value(nodes[name].nodeid, dv)
                    print("ok", flush=True)
                else:
                    print(f"error unknown command {parts[0]}", flush=True)
            except Exception as e:  # answer, never die on a bad line
                print(f"error {e}", flush=True)


async def churn(server, nodes):
    """Changes every bench node every 100 ms (the benchmark's load)."""
    n = 0
    while True:
        n += 1
        now = datetime.datetime.now(datetime.timezone.utc)
        for i, node in enumerate(nodes):
            dv = ua.DataValue(ua.Variant(float(n + i % 7), ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now)
            await node.write_value(dv)
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main())
