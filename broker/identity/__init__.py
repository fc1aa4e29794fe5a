"""Who the user is: sign-in, refresh, access policy, and the signed identity sent upstream."""
