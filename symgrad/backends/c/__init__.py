"""The C backend: ``codegen`` renders a graph as C through the templates, ``compiler`` builds it,
``cache`` keeps libraries by content hash, ``native`` loads them with cffi and calls them."""
