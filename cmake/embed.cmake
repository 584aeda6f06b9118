# Writes the bytes of IN as a C array NAME (NUL-terminated) and NAME_len into OUT.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," arr "${hex}")
file(WRITE "${OUT}" "/* generated from ${IN} by cmake/embed.cmake */\n#include <stddef.h>\nextern const char ${NAME}[];\nextern const size_t ${NAME}_len;\nconst char ${NAME}[] = {${arr}0};\nconst size_t ${NAME}_len = sizeof ${NAME} - 1;\n")
