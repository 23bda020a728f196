#define MESSAGE "hello from c-make"
