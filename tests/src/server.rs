//! The model served over HTTP/1.1 and TLS on 127.0.0.1. (Skeleton.)
