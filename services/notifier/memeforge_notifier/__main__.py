"""``python -m memeforge_notifier``: deliver webhooks and email until SIGTERM."""

from memeforge_notifier.service import main

if __name__ == "__main__":
    main()
