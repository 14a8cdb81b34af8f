"""Files in and out: images (``images``), atomic writes with the umask's mode (``files``), what pisasr ships and
caches (``paths``), and hub access that fails fast when the hub is unreachable (``hub``)."""
