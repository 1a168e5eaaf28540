"""Read receipts (m.read, m.read.private, threaded) and the read markers built on them."""
