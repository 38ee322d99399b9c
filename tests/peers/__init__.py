"""Real test peers on loopback for the tfjsfs test suite.

* :mod:`peers.netguard` - refuses network access outside 127.0.0.0/8 and ::1.
* :mod:`peers.s3` - moto S3 server (s3fs).
* :mod:`peers.gcs` - fake-gcs-server (gcsfs).
* :mod:`peers.http` - static file server with Range, faults and counters.
* :mod:`peers.upload` - server recording POST/PUT uploads (multipart parsed).
* :mod:`peers.tls` - throwaway trustme CA for HTTPS variants.
* :mod:`peers.fixtures` - the pytest fixtures built on them.
"""
