//! Object tags and CSV rows of an IdP fraud report, checked before the database.
