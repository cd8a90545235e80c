package main

import (
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

type winsize struct {
	rows, cols, xpixel, ypixel uint16
}

func ioctl(fd uintptr, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// openPTY allocates a pseudo-terminal from /dev/ptmx. The master is non-blocking and registered with
// Go's poller (read deadlines work on it); the slave is a plain descriptor for the child.
func openPTY() (master *os.File, slaveFD int, name string, err error) {
	mfd, err := syscall.Open("/dev/ptmx", syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, -1, "", err
	}
	var unlock int32
	if err := ioctl(uintptr(mfd), syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		syscall.Close(mfd)
		return nil, -1, "", err
	}
	var n uint32
	if err := ioctl(uintptr(mfd), syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		syscall.Close(mfd)
		return nil, -1, "", err
	}
	name = "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	sfd, err := syscall.Open(name, syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		syscall.Close(mfd)
		return nil, -1, "", err
	}
	if err := syscall.SetNonblock(mfd, true); err != nil {
		syscall.Close(mfd)
		syscall.Close(sfd)
		return nil, -1, "", err
	}
	return os.NewFile(uintptr(mfd), "/dev/ptmx"), sfd, name, nil
}

// setWinsize sets the terminal size without taking the file out of non-blocking mode (f.Fd() would).
func setWinsize(f *os.File, rows, cols int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	ws := winsize{rows: uint16(rows), cols: uint16(cols)}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ioErr = ioctl(fd, syscall.TIOCSWINSZ, unsafe.Pointer(&ws))
	}); err != nil {
		return err
	}
	return ioErr
}

func getWinsize(fd uintptr) (rows, cols int, err error) {
	var ws winsize
	if err := ioctl(fd, syscall.TIOCGWINSZ, unsafe.Pointer(&ws)); err != nil {
		return 0, 0, err
	}
	return int(ws.rows), int(ws.cols), nil
}
