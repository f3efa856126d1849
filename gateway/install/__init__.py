"""What `airlock install claude|vscode|cursor` does to an MCP client's config: every server it uses,
stdio or remote, rewritten to run through `airlock run`, and undone by `--uninstall`. Where each
client keeps its config (`locate`), JSONC read and edited in place (`jsonc`), a server entry and
the `airlock run` line inside a wrapped one (`entry`), wrapping and unwrapping (`wrap`, `unwrap`;
pure), the edit planned for one file (`plan`), the file, its backup and its atomic replacement
(`files`), and the failures (`errors`). The command itself is `gateway.cli.install`.

Imports: errors, protocol, upstream.
"""

__all__ = ["entry", "errors", "files", "jsonc", "locate", "plan", "unwrap", "wrap"]
