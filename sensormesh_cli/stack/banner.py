"""What `sensormesh up` prints once everything runs: where to look, and what to try."""

from __future__ import annotations

from sensormesh_cli.stack.examples import default_paths, display_path, reachable, render
from sensormesh_cli.stack.local_ca import LocalTls
from sensormesh_cli.stack.stack import Running, StackOptions


def banner(options: StackOptions, running: Running) -> str:
    e = options.endpoints
    database = running.database
    scheme, over = ("https", ", TLS") if options.tls else ("http", "")
    where = [
        ("web console", f"{scheme}://{reachable(e.http)}/  (sign in with the admin API key below)"),
        ("REST, gRPC, gRPC-Web", f"{scheme}://{reachable(e.http)}  (Envoy)"),
        ("Envoy admin", f"http://{reachable(e.admin)}  (/stats, /clusters)"),
        ("ingest (gRPC, uploads)", f"{reachable(e.ingest)}{over and '  (TLS)'}"),
        ("query (gRPC, the rest)", f"{reachable(e.query)}{over and '  (TLS)'}"),
        ("control (gRPC, commands)", f"{reachable(e.control)}{over and '  (TLS)'}"),
    ]
    if options.tls:
        ca = display_path(LocalTls(options.data_dir / "tls").ca_cert)
        where.append(
            ("TLS CA", f"{ca}  (trust it: curl --cacert, --ca-file; server certificate for localhost)")
        )
    if database is not None:
        where.append(
            (
                "PostgreSQL",
                database.url
                if database.embedded
                else "the configured database (--database-url / SENSORMESH_DATABASE_URL)",
            )
        )
    where.append(("logs", f"{display_path(options.log_dir)}/  (one file per program)"))
    if running.admin_key is not None:
        where.append(
            (
                "admin API key",
                f"{display_path(running.admin_key.path)}  (0600; the CLI reads it, curl sends it as below)",
            )
        )
    if running.tokens:
        where.append(("device tokens", f"{display_path(options.data_dir / 'devices')}/  (0600)"))
    width = max(len(name) for name, _ in where)
    lines = ["", "sensormesh is up.", ""]
    lines += [f"  {name:<{width}}  {value}" for name, value in where]
    if running.devices:
        lines += [
            "",
            "Simulated devices: " + ", ".join(t.device.device_id for t in running.tokens if t.usable),
        ]
    paths = default_paths(options.data_dir, tls=options.tls)
    lines += ["", "Try (copy and paste):", "", render(e, paths, indent="    ")]
    lines += ["Ctrl-C stops everything; the data stays for the next start."]
    return "\n".join(lines)
