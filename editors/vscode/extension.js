// netspec for VS Code: the grammar colours .net specs (syntaxes/), and this starts
// `netspec lsp` over stdio for diagnostics, hover, definitions, completion and formatting.
// Plain JavaScript, no build step: `netspec.path` names the command (default: netspec on
// the PATH; "${workspaceFolder}/.venv/bin/netspec" for a project's own).
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

// "${workspaceFolder}" in a setting is the first folder open, as in VS Code's tasks.
function expand(value) {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? ".";
  return value.replaceAll("${workspaceFolder}", folder);
}

function activate(context) {
  const config = vscode.workspace.getConfiguration("netspec");
  const server = {
    command: expand(config.get("path", "netspec")),
    args: ["lsp", ...config.get("args", []).map(expand)],
    transport: TransportKind.stdio,
  };
  client = new LanguageClient(
    "netspec",
    "netspec",
    { run: server, debug: server },
    {
      documentSelector: [
        { scheme: "file", language: "netspec" },
        { scheme: "untitled", language: "netspec" },
      ],
    },
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
