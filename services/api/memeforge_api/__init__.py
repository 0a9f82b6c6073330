"""memeforge api: templates in S3, meme items in DynamoDB, jobs on SQS."""
