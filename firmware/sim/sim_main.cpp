// beacon-sim: the sketch (beacon.ino and its logic, unchanged) running as a simulated board.
//
//   BEACON_SIM_ID=7 beacon-sim --serial-fd N
//
// Serial is file descriptor N, the master side of a pty the parent created: whoever opens the
// pty's other side (a terminal, pyserial, the HIL rig) types commands at the sketch. The radio is
// bridged on stdin/stdout (sim/bridge.h) to a bumble device in the parent. The process runs
// setup() once, then loop() whenever input arrives and at least every LOOP_IDLE_MS; millis() is
// real time since start. It exits 0 when stdin closes (the parent let go), 2 on bad arguments.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "bridge.h"
#include "fakes.h"
#include "sim_id.h"

void setup();  // beacon.ino
void loop();

namespace {

// The sketch's timing needs are coarse (identify blinks every 250 ms, advertising refreshes every
// minute); 10 ms keeps them exact to 4 % while an idle sim wakes only 100 times a second.
// Serial and bridge input wake it at once.
const int LOOP_IDLE_MS = 10;

int usage(const char* message) {
    fprintf(stderr, "beacon-sim: %s\nusage: %s=<0-65535> beacon-sim --serial-fd N\n", message,
            sim::BEACON_ID_VARIABLE);
    return 2;
}

uint32_t monotonicMs() {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<uint32_t>(static_cast<uint64_t>(now.tv_sec) * 1000u +
                                 static_cast<uint64_t>(now.tv_nsec) / 1000000u);
}

bool writeAll(int fd, const std::string& text) {
    size_t done = 0;
    while (done < text.size()) {
        const ssize_t count = write(fd, text.data() + done, text.size() - done);
        if (count < 0 && errno == EINTR) {
            continue;
        }
        if (count <= 0) {
            return false;
        }
        done += static_cast<size_t>(count);
    }
    return true;
}

// USB serial with nobody listening drops what the board prints; so does this (the pty's buffer
// would otherwise fill up and block the loop, which the real board never does).
void writeSerial(int fd, const std::string& text) {
    (void)writeAll(fd, text);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 || strcmp(argv[1], "--serial-fd") != 0) {
        return usage("missing --serial-fd");
    }
    char* end = nullptr;
    const long serialFd = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || serialFd < 0 || fcntl(static_cast<int>(serialFd),
                                                                 F_GETFD) < 0) {
        return usage("--serial-fd is not an open file descriptor");
    }
    const char* idText = getenv(sim::BEACON_ID_VARIABLE);
    uint16_t id = 0;
    if (idText != nullptr && !sim::parseBeaconId(idText, &id)) {
        return usage("the beacon id is not a number 0-65535");
    }
    const int serial = static_cast<int>(serialFd);
    fcntl(serial, F_SETFL, fcntl(serial, F_GETFL) | O_NONBLOCK);

    sim::Bridge bridge;
    const uint32_t startMs = monotonicMs();
    fake_arduino::setMillis(0);
    setup();
    std::string bridgeInput;
    bool serialHungUp = false;
    // The first pass takes only what is already waiting (a parent may have typed `adv off` into
    // the pty before starting the process), so the first sync() already shows its effect.
    int waitMs = 0;
    for (;;) {
        // Nobody has the pty's other side open: the master reports a hang-up at once, so leave it
        // out of one wait instead of spinning.
        struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {serialHungUp ? -1 : serial, POLLIN, 0}};
        if (poll(fds, 2, waitMs) < 0 && errno != EINTR) {
            perror("beacon-sim: poll");
            return 1;
        }
        waitMs = LOOP_IDLE_MS;
        serialHungUp = (fds[1].revents & POLLHUP) != 0 && (fds[1].revents & POLLIN) == 0;
        if ((fds[0].revents & (POLLIN | POLLHUP)) != 0) {
            char buffer[4096];
            const ssize_t count = read(STDIN_FILENO, buffer, sizeof(buffer));
            if (count == 0) {
                return 0;  // the parent closed the bridge: power off
            }
            if (count > 0) {
                bridgeInput.append(buffer, static_cast<size_t>(count));
            }
            size_t newline;
            while ((newline = bridgeInput.find('\n')) != std::string::npos) {
                const std::string line = bridgeInput.substr(0, newline);
                bridgeInput.erase(0, newline + 1);
                std::string error;
                if (!bridge.handle(line, &error)) {
                    fprintf(stderr, "beacon-sim: %s\n", error.c_str());
                }
            }
        }
        if ((fds[1].revents & POLLIN) != 0) {
            char buffer[256];
            const ssize_t count = read(serial, buffer, sizeof(buffer));
            if (count > 0) {
                fake_arduino::serialInput(std::string(buffer, static_cast<size_t>(count)));
            }
        }

        fake_arduino::setMillis(monotonicMs() - startMs);
        loop();
        writeSerial(serial, fake_arduino::takeSerialOutput());
        if (!writeAll(STDOUT_FILENO, bridge.sync())) {
            fprintf(stderr, "beacon-sim: the bridge (stdout) is gone; stopping\n");
            return 1;
        }
    }
}
