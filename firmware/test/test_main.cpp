// Runs every registered test in a child process and prints "N passed, N failed".
// Usage: tests [substring]   (only tests whose name contains it)
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "harness.h"

namespace {

struct TestCase {
    const char* name;
    harness::TestFunction function;
};

std::vector<TestCase>& registry() {
    static std::vector<TestCase> tests;
    return tests;
}

const unsigned TIMEOUT_SECONDS = 60;  // a hung test (e.g. a blocking loop()) fails, not the run

}  // namespace

namespace harness {

Registrar::Registrar(const char* name, TestFunction function) {
    TestCase test = {name, function};
    registry().push_back(test);
}

void fail(const char* file, int line, const std::string& message) {
    printf("    %s:%d: %s\n", file, line, message.c_str());
    fflush(stdout);
    exit(1);
}

std::string show(const std::string& value) { return "\"" + value + "\""; }
std::string show(const char* value) { return value == nullptr ? "null" : show(std::string(value)); }
std::string show(bool value) { return value ? "true" : "false"; }
std::string show(long long value) { return std::to_string(value); }
std::string show(unsigned long long value) { return std::to_string(value); }

std::string show(const std::vector<uint8_t>& bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string text;
    for (uint8_t byte : bytes) {
        text += digits[byte >> 4];
        text += digits[byte & 0xF];
    }
    return text + " (" + std::to_string(bytes.size()) + " bytes)";
}

}  // namespace harness

int main(int argc, char** argv) {
    const char* filter = argc > 1 ? argv[1] : "";
    int passed = 0;
    int failed = 0;
    for (const TestCase& test : registry()) {
        if (strstr(test.name, filter) == nullptr) {
            continue;
        }
        // The child's stdout and stderr (sanitizer reports) are collected and shown under the
        // test's name when it fails.
        int pipeFds[2];
        if (pipe(pipeFds) != 0) {
            perror("pipe");
            return 2;
        }
        fflush(stdout);
        fflush(stderr);
        const pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            close(pipeFds[0]);
            dup2(pipeFds[1], STDOUT_FILENO);
            dup2(pipeFds[1], STDERR_FILENO);
            close(pipeFds[1]);
            alarm(TIMEOUT_SECONDS);
            test.function();
            fflush(stdout);
            exit(0);
        }
        close(pipeFds[1]);
        std::string output;
        char buffer[4096];
        ssize_t count;
        while ((count = read(pipeFds[0], buffer, sizeof(buffer))) > 0) {
            output.append(buffer, static_cast<size_t>(count));
        }
        close(pipeFds[0]);
        int status = 0;
        if (waitpid(pid, &status, 0) < 0) {
            perror("waitpid");
            return 2;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            ++passed;
            printf("ok   %s\n", test.name);
            continue;
        }
        ++failed;
        if (WIFSIGNALED(status)) {
            printf("FAIL %s (killed by signal %d%s)\n", test.name, WTERMSIG(status),
                   WTERMSIG(status) == SIGALRM ? ": timed out" : "");
        } else {
            printf("FAIL %s\n", test.name);
        }
        fputs(output.c_str(), stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
