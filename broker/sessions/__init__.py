"""Server-side sessions: an opaque cookie ticket, AES-GCM sealed records, memory and Redis stores."""
