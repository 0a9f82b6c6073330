"""memeforge consumer: validates requests, advances items, fans render jobs out."""
