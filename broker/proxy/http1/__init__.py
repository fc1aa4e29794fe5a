"""The HTTP/1.1 client that forwards plain requests upstream (issue 19): pooled asyncio connections, answers
parsed by llhttp (``httptools``), requests written by ``wire``. WebSockets still use aiohttp's client."""
