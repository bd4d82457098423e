# gyp (bundled with mediasoup-sys 0.2.5) imports ABCs such as collections.MutableSet, which moved
# to collections.abc and were removed from `collections` in Python 3.10. Alias them back so the
# machine's Python 3.11 can run it.
import collections
import collections.abc

for _name in ("MutableSet", "Mapping", "MutableMapping", "Sequence", "MutableSequence",
              "Iterable", "Callable", "Set", "Hashable", "Sized", "Container"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
