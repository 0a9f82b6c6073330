"""memeforge notifier: signed webhooks and SES email for ended memes and batches."""
