pub const MESSAGE: &str = "hello from cargo";
