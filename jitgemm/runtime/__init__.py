"""Vendor runtimes behind one small protocol, the source reader and the code-object cache."""
