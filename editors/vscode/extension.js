// Starts microverify-lsp (installed with `pip install microverify`) for .mv files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("microverify").get("server.command");
  client = new LanguageClient(
    "microverify",
    "microverify",
    { command, args },
    { documentSelector: [{ scheme: "file", language: "microverify" }] }
  );
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
