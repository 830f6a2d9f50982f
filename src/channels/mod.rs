//! Delivery to customers and systems: email (SMTP | file | memory), SMS (Twilio | file | memory).
