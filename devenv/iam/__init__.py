"""IAM in the dev environment: moto enforcing IAM, users, vended keys, policy checks."""
