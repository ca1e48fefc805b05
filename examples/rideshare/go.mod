module kiln.example/rideshare

go 1.19
