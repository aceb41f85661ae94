"""Work at the sites: sites and their tasks, runners, payloads that cross, the site-output cache."""
