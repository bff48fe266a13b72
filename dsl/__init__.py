"""The microverify language: grammar, parser, AST, name resolution and type checking."""
