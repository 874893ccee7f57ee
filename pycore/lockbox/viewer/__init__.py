"""The viewer's Python side (runs in a Web Worker under Pyodide)."""
