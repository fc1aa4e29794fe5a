"""The gateway's own HTTP answers: error responses, request keys, the /.auth/* paths, redirects, pages."""
