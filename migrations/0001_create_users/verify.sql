SELECT count(*) = 5000 FROM users;
